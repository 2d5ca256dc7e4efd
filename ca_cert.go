package manus

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"strings"
)

const (
	// maxCACertBytes and maxCACertificates bound ca_cert, a proxy's CA or
	// a few, parsed on every config write and cache build.
	maxCACertBytes    = 64 << 10
	maxCACertificates = 32
)

// canonicalCACert checks a written ca_cert and returns its certificates
// re-encoded: CERTIFICATE blocks only, nothing around them, so a pasted key
// is refused, never stored or shown. "" removes the CA.
func canonicalCACert(data string) (string, error) {
	if data == "" {
		return "", nil
	}
	if len(data) > maxCACertBytes {
		return "", &fieldError{"ca_cert", fmt.Sprintf("is %d KiB; at most %d KiB of PEM (up to %d certificates) is accepted", (len(data)+1023)>>10, maxCACertBytes>>10, maxCACertificates)}
	}
	certs, err := decodeCertificates([]byte(data), true)
	if err != nil {
		return "", err
	}
	return encodeCertificates(certs), nil
}

func encodeCertificates(certs []*x509.Certificate) string {
	var out strings.Builder
	for _, cert := range certs {
		out.Write(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}))
	}
	return out.String()
}

// loadCACert reads a stored ca_cert, skipping the text around its blocks
// that versions before 0.2.0 kept.
func loadCACert(data string) ([]*x509.Certificate, error) {
	return decodeCertificates([]byte(data), false)
}

// shownCACert is a stored ca_cert as a config read shows it: only its
// certificates.
func shownCACert(stored string) string {
	certs, err := loadCACert(stored)
	if stored == "" || err != nil {
		return ""
	}
	return encodeCertificates(certs)
}

var pemBegin = []byte("-----BEGIN ")

// decodeCertificates reads CERTIFICATE blocks in linear time, each from
// where the last ended; strict refuses text outside them and too many.
func decodeCertificates(rest []byte, strict bool) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for {
		rest = bytes.TrimSpace(rest)
		if len(rest) == 0 {
			break
		}
		if strict && !bytes.HasPrefix(rest, pemBegin) {
			return nil, &fieldError{"ca_cert", "holds text outside its PEM blocks; give only -----BEGIN CERTIFICATE----- blocks (the text is not stored)"}
		}
		block, next := pem.Decode(rest)
		if block == nil {
			if strict || len(certs) == 0 {
				return nil, &fieldError{"ca_cert", "is not PEM: expected one or more -----BEGIN CERTIFICATE----- blocks"}
			}
			break // text after the last block of an old stored config
		}
		if err := checkCertificateBlock(block, len(certs), strict); err != nil {
			return nil, err
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, &fieldError{"ca_cert", "contains a certificate that does not parse: " + err.Error()}
		}
		certs = append(certs, cert)
		rest = next
	}
	if len(certs) == 0 {
		return nil, &fieldError{"ca_cert", "contains no certificate"}
	}
	return certs, nil
}

func checkCertificateBlock(block *pem.Block, before int, strict bool) error {
	switch {
	case block.Type != "CERTIFICATE":
		return &fieldError{"ca_cert", fmt.Sprintf("contains a %q PEM block; only CERTIFICATE blocks are accepted", shorten(block.Type, 40))}
	case len(block.Headers) > 0:
		return &fieldError{"ca_cert", "contains a CERTIFICATE block with PEM headers; give the certificate alone"}
	case strict && before == maxCACertificates:
		return &fieldError{"ca_cert", fmt.Sprintf("holds more than %d certificates", maxCACertificates)}
	}
	return nil
}
