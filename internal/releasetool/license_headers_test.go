package main

import (
	"crypto/sha256"
	"encoding/hex"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// mpl2SHA256 is the SHA-256 of the MPL-2.0 text as Mozilla publishes it
// (mozilla.org/MPL/2.0, plain text), byte for byte, with no notice added.
const mpl2SHA256 = "fab3dd6bdab226f1c08630b1dd917e11fcb4ec5e1e020e2c16f83a0a13863e85"

// repoRoot is two directories up from this package.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("no go.mod at %s: %v", root, err)
	}
	return root
}

func TestLicenseFileIsMPL2(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repoRoot(t), "LICENSE"))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	if got := hex.EncodeToString(sum[:]); got != mpl2SHA256 {
		t.Fatalf("LICENSE is not the unmodified MPL-2.0 text (sha256 %s)", got)
	}
}

// otherLicenseClaims are phrases that, in a comment of a Go file of ours,
// would put that file under terms other than the repository's LICENSE: an
// owner's notice, another license's grant, or an SPDX identifier other than
// MPL-2.0. (This comment avoids the words it looks for.)
var otherLicenseClaims = []*regexp.Regexp{
	regexp.MustCompile(`(?i)\bcopyright\b|\(c\)\s*\d{4}|©`),
	regexp.MustCompile(`(?i)all rights reserved`),
	regexp.MustCompile(`(?i)licen[cs]ed under`),
	regexp.MustCompile(`(?i)permission is hereby granted`),
	regexp.MustCompile(`(?i)redistribution and use in source and binary forms`),
	regexp.MustCompile(`(?i)general public license|\b(a|l)?gpl(-|v)?\d`),
	regexp.MustCompile(`(?i)public domain`),
}

// spdxIdentifier finds an SPDX line; its identifier must be MPL-2.0.
var spdxIdentifier = regexp.MustCompile(`(?i)SPDX-License-Identifier:\s*([\w.+-]*)`)

// licenseClaims returns the comment lines of a Go source that claim other
// terms than MPL-2.0. Only comments are read: string literals (this
// package's allow list, for one) are data, not claims.
func licenseClaims(t *testing.T, name string, src []byte) []string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), name, src, parser.ParseComments)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	var claims []string
	for _, group := range f.Comments {
		for _, c := range group.List {
			if m := spdxIdentifier.FindStringSubmatch(c.Text); m != nil && m[1] != "MPL-2.0" {
				claims = append(claims, strings.TrimSpace(c.Text))
				continue
			}
			for _, re := range otherLicenseClaims {
				if re.MatchString(c.Text) {
					claims = append(claims, strings.TrimSpace(c.Text))
					break
				}
			}
		}
	}
	return claims
}

// TestGoFilesClaimNoOtherLicense: the project puts no license header in its
// Go files (the LICENSE file covers the whole repository); a file may carry
// `// SPDX-License-Identifier: MPL-2.0` but nothing that contradicts it,
// such as an owner's notice copied along with someone else's code.
func TestGoFilesClaimNoOtherLicense(t *testing.T) {
	root := repoRoot(t)
	checked := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case ".git", "bin", "dist", ".dev", "node_modules":
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		checked++
		for _, claim := range licenseClaims(t, path, src) {
			rel, _ := filepath.Rel(root, path)
			t.Errorf("%s: %q contradicts the repository's MPL-2.0 LICENSE", rel, claim)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 20 {
		t.Fatalf("checked only %d Go files under %s", checked, root)
	}
}

// TestLicenseClaims: the detector catches what it is for and passes what
// the project writes.
func TestLicenseClaims(t *testing.T) {
	cases := []struct {
		comment string
		claim   bool
	}{
		{"// SPDX-License-Identifier: MPL-2.0", false},
		{"// Package x mints tokens; the client secret is never logged.", false},
		{"// SPDX-License-Identifier: Apache-2.0", true},
		{"// SPDX-License-Identifier: MPL-2.0-no-copyleft-exception", true},
		{"// SPDX-License-Identifier: MIT", true},
		{"// Copyright (c) HashiCorp, Inc.", true},
		{"/* (c) 2024 Someone */", true},
		{"// Licensed under the Apache License, Version 2.0", true},
		{"// Use of this source code is governed by the GNU General Public License v3", true},
		{"// This file is GPLv3.", true},
		{"// Permission is hereby granted, free of charge, to any person", true},
	}
	for _, tc := range cases {
		src := []byte(tc.comment + "\npackage x\n")
		got := len(licenseClaims(t, "x.go", src)) > 0
		if got != tc.claim {
			t.Errorf("%q: claim %v, want %v", tc.comment, got, tc.claim)
		}
	}
}
