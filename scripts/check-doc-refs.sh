#!/usr/bin/env bash
# Checks that what README.md and docs/*.md cite exists in the repository. No build needed; it
# reads text only and takes well under a second.
#
#   scripts/check-doc-refs.sh            # from anywhere; exit 0 when every reference resolves
#   scripts/check-doc-refs.sh FILE.md... # only these documents
#
# What it checks (outside fenced ``` code blocks, which hold commands with placeholders):
#   * backticked repository paths: tokens in `...` that start with src/ scripts/ configs/ tests/
#     bench/ launch/ slurm/ proto/ docs/ cmake/ must name a file or folder of the repository
#     (tracked or not ignored). `*` is a glob; an upper-case placeholder (NAME, KKKKK) matches any
#     name part; a path without extension names a module (`src/eval/metrics`: metrics.h,
#     metrics.cpp). `path:symbol` also needs the symbol (its last `::` part) as a word in the file.
#   * backticked bare C++ file names (`grad_buckets.h`, `trainer/config.h`): some file under
#     src/, tests/ or bench/ must end with that name (`*.pb.h` is generated, and a few external
#     headers are known: see EXTERNAL below).
#   * Markdown links to local files ([x](docs/flags.md), [x](../README.md#anchor), [x](#anchor)):
#     the file must exist and the anchor must be a heading of it (GitHub's anchor rules).
# Each miss is one line `DOC:LINE: ...` naming the document, the line and the missing thing; the
# exit status is then 1.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

if [ "$#" -gt 0 ]; then
  docs=("$@")
else
  docs=(README.md docs/*.md)
fi

# The repository's files: tracked plus untracked-but-not-ignored (so build outputs do not count).
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  listing=$(git ls-files --cached --others --exclude-standard)
else
  listing=$(find . -path ./build -prune -o -path ./.git -prune -o -type f -print | sed 's|^\./||')
fi

printf '%s\n' "$listing" | perl -CSD -Mutf8 -e '
use strict;
use warnings;

my @docs = @ARGV;
my (%file, %dir);
while (my $f = <STDIN>) {
  chomp $f;
  next if $f eq "" || !-e $f;   # listed by git but deleted in the working tree
  $file{$f} = 1;
  my $d = $f;
  while ($d =~ s{/[^/]*$}{}) { $dir{$d} = 1; }
}
my @files = sort keys %file;
my @code_files = grep { m{^(src|tests|bench)/} } @files;

# Headers of other projects a document may name in backticks.
my %EXTERNAL = map { $_ => 1 } qw(mpi.h nccl.h hdf5.h H5Cpp.h cuda.h cuda_runtime.h zip.h png.h zlib.h
  torch.h extension.h script.h);

my $prefixes = qr{(?:src|scripts|configs|tests|bench|launch|slurm|proto|docs|cmake)/};
my ($checked, $bad) = (0, 0);
my %bad_docs;

sub miss { my ($doc, $line, $msg) = @_; print "$doc:$line: $msg\n"; $bad++; $bad_docs{$doc} = 1; }

# GitHub heading anchors of a Markdown file (fenced blocks skipped), with -1, -2 for repeats.
my %anchor_cache;
sub anchors {
  my ($path) = @_;
  return $anchor_cache{$path} if $anchor_cache{$path};
  my %seen; my %set;
  if (open(my $fh, "<:encoding(UTF-8)", $path)) {
    my $fence = 0;
    while (my $l = <$fh>) {
      if ($l =~ /^\s*(```|~~~)/) { $fence = !$fence; next; }
      next if $fence;
      next unless $l =~ /^#{1,6}\s+(.*?)\s*#*\s*$/;
      my $t = $1;
      $t =~ s/\[([^\]]*)\]\([^)]*\)/$1/g;         # a link in a heading: its text
      $t = lc $t;
      $t =~ s/[^\p{L}\p{N}\p{Mn} _-]//g;
      $t =~ s/ /-/g;
      my $slug = $t;
      $slug .= "-" . $seen{$t} if $seen{$t};
      $seen{$t}++;
      $set{$slug} = 1;
    }
    close $fh;
  }
  return $anchor_cache{$path} = \%set;
}

sub normalise {   # a/b/../c -> a/c, ./a -> a
  my ($p) = @_;
  my @out;
  for my $part (split m{/}, $p) {
    next if $part eq "." || $part eq "";
    if ($part eq "..") { return undef unless @out; pop @out; next; }
    push @out, $part;
  }
  return join "/", @out;
}

sub path_exists {
  my ($p) = @_;
  $p =~ s{/+$}{};
  return 1 if $file{$p} || $dir{$p};
  if ($p !~ m{\.[^/]*$}) {                   # a module named without extension: src/eval/metrics
    my $stem = "$p.";
    return 1 if grep { index($_, $stem) == 0 && index($_, "/", length $stem) < 0 } @files;
  }
  if ($p =~ /[*?]/) {                       # a glob
    (my $re = quotemeta $p) =~ s/\\\*/[^\/]*/g;
    $re =~ s/\\\?/[^\/]/g;
    return scalar grep { /^$re$/ } (@files, keys %dir);
  }
  if ($p =~ /[A-Z]{2,}/) {                  # a placeholder such as NAME or NNNNN
    my $re = join "", map { /^[A-Z]{2,}$/ ? "[^/]+" : quotemeta $_ } split /([A-Z]{2,})/, $p;
    return scalar grep { /^$re$/ } (@files, keys %dir);
  }
  return 0;
}

for my $doc (@docs) {
  open(my $fh, "<:encoding(UTF-8)", $doc) or do { miss($doc, 0, "cannot read the document"); next; };
  (my $docdir = $doc) =~ s{[^/]*$}{};
  my $fence = 0;
  my $n = 0;
  while (my $l = <$fh>) {
    $n++;
    if ($l =~ /^\s*(```|~~~)/) { $fence = !$fence; next; }
    next if $fence;

    # Markdown links to local files and anchors.
    while ($l =~ /\]\(([^)\s]+)\)/g) {
      my $target = $1;
      next if $target =~ m{^[a-z][a-z0-9+.-]*:}i;   # http:, https:, mailto:
      my ($path, $anchor) = split /#/, $target, 2;
      my $resolved = $path eq "" ? $doc : normalise($docdir . $path);
      $checked++;
      if (!defined $resolved || !(-e $resolved)) {
        miss($doc, $n, "link to a missing file: ($target)");
        next;
      }
      if (defined $anchor && $anchor ne "" && $resolved =~ /\.md$/) {
        miss($doc, $n, "link to a missing heading: ($target) ($resolved has no heading with anchor #$anchor)")
          unless anchors($resolved)->{$anchor};
      }
    }

    # Backticked spans on this line.
    my $text = $l;
    $text =~ s/``+//g;                          # empty or doubled backticks
    while ($text =~ /`([^`]+)`/g) {
      my $span = $1;
      for my $tok (split /[\s,;()\[\]"=<>|@]+/, $span) {
        next if $tok eq "";
        $tok =~ s/[.:;]+$//;
        next if $tok =~ /\.\.\.|\$|\{|\}|\\/;     # elisions and shell or regex text
        next if $tok =~ /^--?/;                  # a flag
        if ($tok =~ m{^$prefixes}) {
          my ($p, $sym) = split /:/, $tok, 2;
          $p =~ s/#.*$//;
          $checked++;
          if (!path_exists($p)) {
            miss($doc, $n, "missing path `$p`");
            next;
          }
          if (defined $sym && $sym =~ /^[A-Za-z_][A-Za-z0-9_:]*$/ && $file{$p}) {
            (my $word = $sym) =~ s/.*:://;
            my $found = 0;
            if (open(my $src, "<", $p)) {
              while (my $s = <$src>) { if ($s =~ /\b\Q$word\E\b/) { $found = 1; last; } }
              close $src;
            }
            miss($doc, $n, "`$tok`: no `$word` in $p") unless $found;
          }
        } elsif ($tok =~ m{^[A-Za-z0-9_][A-Za-z0-9_./-]*\.(h|cpp)$}) {
          next if $tok =~ /\.pb\.h$/ || $EXTERNAL{$tok} || $tok =~ m{^(torch|c10|ATen|google|H5|cuda)/};
          $checked++;
          my $name = $tok;
          $name =~ s{^\./}{};
          next if $file{$name};
          my $ok = grep { $_ eq $name || substr($_, -length($name) - 1) eq "/$name" } @code_files;
          $ok ||= grep { substr($_, -length($name) - 4) eq "/$name.in" } @files;  # configured headers
          miss($doc, $n, "no file `$name` under src/, tests/ or bench/") unless $ok;
        }
      }
    }
  }
  close $fh;
}

if ($bad) {
  printf "check-doc-refs: %d broken reference(s) in %s (of %d checked)\n", $bad, join(", ", sort keys %bad_docs), $checked;
  exit 1;
}
printf "check-doc-refs: OK, %d references checked in %d documents\n", $checked, scalar @docs;
' "${docs[@]}"
