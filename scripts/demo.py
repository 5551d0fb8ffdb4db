#!/usr/bin/env python3
"""Verify xcr end to end against the local stack: the checking half of `make demo`.

    .venv/bin/python scripts/demo.py --env DIR/local.env [--xcr target/release/xcr]

1. Uploads sample objects to the source bucket with boto3: the sizes around
   GCS's 256 KiB chunk boundary, single-part and multipart uploads up to
   70 MiB, an object carrying every S3 metadata field, and keys with spaces,
   '+', '%', '?', '#', unicode and ten levels of folders. Some are uploaded
   with a CRC32C checksum so S3 stores one; some without, as most real
   objects are.
2. Runs `xcr replicate s3://BUCKET/KEY --json` once per object, the key passed
   raw, with the stack's local.env added to the environment.
3. Reads every object back from GCS and checks bytes, CRC32C (recomputed here,
   as reported by GCS, as reported by xcr, and as stored by S3), the content
   headers, user metadata and xcr's provenance metadata against what S3
   reports for the source object.
4. Runs `xcr audit s3://BUCKET --json`: the drift audit must report no key
   missing, different, extra or unverifiable.
5. Prints one line per object and a summary; exits 1 if anything differs.

The expected values are always recomputed from the bytes uploaded here or read
from the source with HeadObject, never taken from xcr's own report: the point
is to catch xcr being wrong, not to agree with it.

Exit codes: 0 every object verified; 1 some object failed; 2 the demo could
not run (no stack, no xcr binary...), explained on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import base64
import gzip
import io
import json
import os
import random
import subprocess
import sys
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xcrlocal import GCS_PROJECT, ROOT
from xcrlocal import env as local_env

KIB = 1024
MIB = 1024 * KIB
# Objects at or above this size are uploaded to S3 as multipart, like the AWS
# CLI and SDK transfer managers do, so their ETag is not an MD5 ("...-N").
MULTIPART_THRESHOLD = 16 * MIB
MULTIPART_CHUNK = 8 * MIB

# S3 HeadObject field -> google.cloud.storage.Blob attribute that must match.
CONTENT_FIELDS = {
    "ContentType": "content_type",
    "ContentEncoding": "content_encoding",
    "ContentLanguage": "content_language",
    "ContentDisposition": "content_disposition",
    "CacheControl": "cache_control",
}
PROVENANCE_BUCKET = "xcr-source-bucket"
PROVENANCE_KEY = "xcr-source-key"


class DemoError(Exception):
    """The demo cannot run at all: printed as one message, exit status 2."""


# --------------------------------------------------------------------------
# Samples
# --------------------------------------------------------------------------


@dataclass
class Sample:
    """One source object: what to upload, and what we learn about it."""

    key: str
    data: bytes
    extra: dict[str, Any] = field(default_factory=dict)  # PutObject metadata arguments
    checksum: bool = False  # upload with ChecksumAlgorithm=CRC32C
    # Filled in by the steps below.
    head: dict[str, Any] = field(default_factory=dict)
    report: dict[str, Any] | None = None
    xcr_error: str | None = None
    xcr_stderr: str = ""
    xcr_seconds: float = 0.0
    dest_crc: str | None = None
    # What xcr did with it: `xcr replicate`'s or the API's outcome, else the ledger's state
    # (`xcr status`) for objects the queue or a job copied.
    outcome: str | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def multipart(self) -> bool:
        return len(self.data) >= MULTIPART_THRESHOLD

    def fail_xcr(self, message: str) -> None:
        """xcr itself failed: nothing to verify for this object."""
        self.xcr_error = message
        self.problems.append(message)


def build_samples(seed: int) -> list[Sample]:
    """The objects to replicate; deterministic for a given seed."""
    rng = random.Random(seed)
    sizes = [
        ("0B", 0),
        ("1B", 1),
        ("256KiB-1", 256 * KIB - 1),
        ("256KiB", 256 * KIB),
        ("256KiB+1", 256 * KIB + 1),
        ("5MiB", 5 * MIB),
        ("20MiB", 20 * MIB),
        ("70MiB", 70 * MIB),  # over 64 MiB: more than one resumable chunk anywhere
    ]
    samples = [
        # moto's multipart checksums are not S3's (no "-N" composite form), so
        # only single-part objects are uploaded with a CRC32C.
        Sample(f"sizes/{label}.bin", rng.randbytes(size), checksum=size in (1, 256 * KIB, 5 * MIB))
        for label, size in sizes
    ]

    text = "".join(f"line {i}: l'été est chaud, ünïcødé ok\n" for i in range(2000)).encode()
    samples.append(
        Sample(
            "metadata/all-fields.txt.gz",
            gzip.compress(text, mtime=0),
            extra={
                "ContentType": "text/plain; charset=utf-8",
                "ContentEncoding": "gzip",  # must arrive as stored, not transcoded
                "ContentLanguage": "fr-CA",
                "ContentDisposition": 'attachment; filename="all-fields.txt"',
                "CacheControl": "public, max-age=3600",
                "Metadata": {"owner": "data-platform", "purpose": "xcr demo", "batch": "2026-11"},
            },
            checksum=True,
        )
    )
    samples.append(Sample("données/été 2026/ünïcødé+%25 file.txt", "Grüße, été, ünïcødé\n".encode(), checksum=True))
    samples.append(Sample("with spaces/a file name with  two spaces.txt", rng.randbytes(3 * KIB)))
    samples.append(Sample("specials/a+b%20c&d=e;f,g~h'i(j)!@$ ?q=1#frag.txt", rng.randbytes(1000)))
    deep = "/".join(f"level-{i:02d}" for i in range(1, 11))
    samples.append(
        Sample(f"deep/{deep}/leaf.json", json.dumps({"depth": 10}).encode(), extra={"ContentType": "application/json"})
    )
    return samples


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


BACKFILL_PREFIX = "backfill/"


def build_backfill(seed: int) -> list[Sample]:
    """Twenty small objects that predate replication."""
    rng = random.Random(seed + 1)
    return [Sample(key=f"{BACKFILL_PREFIX}{i:03d}.bin", data=rng.randbytes(1000 + 97 * i)) for i in range(20)]


API_PREFIX = "on-demand/"


def build_api_samples(seed: int) -> list[Sample]:
    """Three objects nobody announces, asked for explicitly through the HTTP API."""
    rng = random.Random(seed + 2)
    return [Sample(key=f"{API_PREFIX}{name}", data=rng.randbytes(size))
            for name, size in (("report.csv", 4321), ("a b+c.json", 777), ("ünïcode.bin", 65536))]


def read_env(path: Path) -> dict[str, str]:
    """The stack's local.env (what scripts/stack.py writes), with what the demo needs in it."""
    try:
        values = local_env.read_env(path)
    except FileNotFoundError as err:
        raise DemoError(f"no env file at {path}: start the stack with `scripts/stack.py up --dir DIR` first") from err
    required = ("AWS_ENDPOINT_URL", "STORAGE_EMULATOR_HOST", "XCR_SOURCE_BUCKET", "XCR_DEST_BUCKET")
    missing = [k for k in required if not values.get(k)]
    if missing:
        raise DemoError(f"{path} lacks {', '.join(missing)}")
    return values


def crc32c_b64(data: bytes) -> str:
    """CRC32C as GCS reports it: base64 of the big-endian 4-byte value."""
    import google_crc32c

    return base64.b64encode(google_crc32c.value(data).to_bytes(4, "big")).decode()


def find_xcr(explicit: str | None) -> Path:
    if explicit:
        path = Path(explicit)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise DemoError(f"--xcr {explicit}: not an executable file")
        return path.resolve()
    for candidate in (ROOT / "target" / "release" / "xcr", ROOT / "target" / "debug" / "xcr"):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise DemoError("no xcr binary: build it (cargo build --release) or pass --xcr PATH")


def human(size: int) -> str:
    """Round sizes in KiB/MiB, others exactly: 256 KiB - 1 must not read as 256 KiB."""
    for unit, scale in (("MiB", MIB), ("KiB", KIB)):
        if size >= scale and size % scale == 0:
            return f"{size // scale} {unit}"
    return f"{size:,} B"


def shorten(text: str, width: int) -> str:
    """Middle-truncate, keeping both the folder and the file name readable."""
    if len(text) <= width:
        return text
    keep = width - 1
    return text[: keep // 2] + "…" + text[len(text) - (keep - keep // 2) :]


def dig(doc: Any, *path: str) -> Any:
    """doc[path...] or None: xcr's report fields are provisional, read defensively."""
    for part in path:
        if not isinstance(doc, dict):
            return None
        doc = doc.get(part)
    return doc


# --------------------------------------------------------------------------
# The steps
# --------------------------------------------------------------------------


class Demo:
    def __init__(self, env: dict[str, str], xcr: Path | None, timeout: float):
        import boto3
        from botocore.config import Config
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        self.env = env
        self.xcr = xcr
        self.timeout = timeout
        self.bucket = env["XCR_SOURCE_BUCKET"]
        self.s3 = boto3.client(
            "s3",
            endpoint_url=env["AWS_ENDPOINT_URL"],
            region_name=env.get("AWS_REGION", "us-east-1"),
            aws_access_key_id=env.get("AWS_ACCESS_KEY_ID", "test"),
            aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY", "test"),
            config=Config(
                s3={"addressing_style": "path"},
                # Only the uploads that ask for a checksum get one: most real
                # objects have none, and xcr must handle both.
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
                retries={"max_attempts": 3, "mode": "standard"},
            ),
        )
        self.gcs = storage.Client(
            project=GCS_PROJECT,
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": env["STORAGE_EMULATOR_HOST"]},
        )
        self.dest = self.gcs.bucket(env["XCR_DEST_BUCKET"])

    # a. ---------------------------------------------------------------------

    def upload(self, sample: Sample) -> None:
        from boto3.s3.transfer import TransferConfig

        args = dict(sample.extra)
        if sample.checksum:
            args["ChecksumAlgorithm"] = "CRC32C"
        if sample.multipart:
            self.s3.upload_fileobj(
                io.BytesIO(sample.data),
                self.bucket,
                sample.key,
                ExtraArgs=args,
                Config=TransferConfig(
                    multipart_threshold=MULTIPART_THRESHOLD, multipart_chunksize=MULTIPART_CHUNK, use_threads=False
                ),
            )
        else:
            self.s3.put_object(Bucket=self.bucket, Key=sample.key, Body=sample.data, **args)
        sample.head = self.s3.head_object(Bucket=self.bucket, Key=sample.key, ChecksumMode="ENABLED")
        stored = sample.head.get("ContentLength")
        if stored != len(sample.data):
            raise DemoError(f"S3 stored {stored} bytes for {sample.key!r}, uploaded {len(sample.data)}")

    # b. ---------------------------------------------------------------------

    def replicate(self, sample: Sample) -> None:
        assert self.xcr is not None
        argv = [str(self.xcr), "replicate", f"s3://{self.bucket}/{sample.key}", "--json"]
        started = time.monotonic()
        try:
            run = subprocess.run(
                argv,
                env={**os.environ, **self.env},
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=self.timeout,
            )
        except subprocess.TimeoutExpired as err:
            sample.xcr_stderr = (err.stderr or b"").decode(errors="replace").strip()
            sample.fail_xcr(f"xcr timed out after {self.timeout:.0f} s")
            return
        finally:
            sample.xcr_seconds = time.monotonic() - started
        stdout = run.stdout.decode(errors="replace").strip()
        sample.xcr_stderr = run.stderr.decode(errors="replace").strip()
        sample.report = parse_report(stdout)
        if run.returncode != 0:
            why = dig(sample.report, "error", "message") or (
                sample.xcr_stderr.splitlines()[-1] if sample.xcr_stderr else "(no stderr)"
            )
            sample.fail_xcr(f"xcr exit {run.returncode}: {why}")
            return
        if sample.report is None:
            sample.problems.append(f"xcr printed no JSON object: {shorten(stdout, 80)!r}")

    @contextlib.contextmanager
    def notifications_off(self):
        """Switches the bucket's notifications off for the block, then restores them."""
        saved = self.s3.get_bucket_notification_configuration(Bucket=self.bucket)
        saved.pop("ResponseMetadata", None)
        self.s3.put_bucket_notification_configuration(Bucket=self.bucket, NotificationConfiguration={})
        try:
            yield
        finally:
            self.s3.put_bucket_notification_configuration(Bucket=self.bucket, NotificationConfiguration=saved)

    def migrate(self, prefix: str, expected: int) -> None:
        """`xcr jobs create`, `xcr pump` until idle, then `xcr jobs show`: the job must have
        succeeded with exact counters."""
        assert self.xcr is not None
        env = {**os.environ, **self.env}
        run = subprocess.run([str(self.xcr), "jobs", "create", "--source-bucket", self.bucket, "--prefix", prefix, "--json"],
                             env=env, capture_output=True, timeout=self.timeout)
        job = parse_report(run.stdout.decode(errors="replace").strip()) or {}
        if run.returncode != 0 or "id" not in job:
            raise DemoError(f"xcr jobs create failed: {run.stdout.decode(errors='replace')} {run.stderr.decode(errors='replace')[-500:]}")
        self.pump()
        run = subprocess.run([str(self.xcr), "jobs", "show", job["id"], "--json"], env=env, capture_output=True, timeout=60)
        shown = parse_report(run.stdout.decode(errors="replace").strip()) or {}
        counters = shown.get("counters", {})
        print(f"job {job['id']}: {shown.get('status')} listed {counters.get('listed')} replicated {counters.get('replicated')} "
              f"skipped {counters.get('skipped')} failed {counters.get('failed')} bytes {counters.get('bytes')}")
        if shown.get("status") != "SUCCEEDED" or counters.get("listed") != expected or counters.get("replicated") != expected:
            raise DemoError(f"the migration job did not copy all {expected} objects: {shown}")

    def via_api(self, samples: list[Sample]) -> None:
        """Starts `xcr serve` (the api function's Router), asks for the first object with
        POST /v1/replicate and the rest with POST /v1/replicate/batch, then stops it."""
        import json
        import urllib.request

        assert self.xcr is not None
        server = subprocess.Popen([str(self.xcr), "serve", "--port", "0"], env={**os.environ, **self.env},
                                  stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            line = server.stdout.readline().strip() if server.stdout else ""
            if not line.startswith("listening on "):
                raise DemoError(f"xcr serve did not start: {line!r}")
            base = line.removeprefix("listening on ")

            def post(path: str, body: dict) -> dict:
                req = urllib.request.Request(base + path, data=json.dumps(body).encode(), method="POST",
                                             headers={"content-type": "application/json"})
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    return json.load(resp)

            one = post("/v1/replicate", {"bucket": self.bucket, "key": samples[0].key})
            print(f"POST /v1/replicate {samples[0].key!r}: {one.get('outcome')}")
            batch = post("/v1/replicate/batch", {"bucket": self.bucket, "keys": [s.key for s in samples[1:]]})
            print(f"POST /v1/replicate/batch ({len(samples) - 1} keys): {batch.get('summary')}")
            outcomes = [one.get("outcome")] + [r.get("outcome") for r in batch.get("results", [])]
            for sample, outcome in zip(samples, outcomes):
                sample.outcome = outcome
                if outcome != "replicated":
                    sample.problems.append(f"the API answered {outcome!r}, not 'replicated'")
        except OSError as err:
            raise DemoError(f"the HTTP API failed: {err}") from err
        finally:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()

    def outcomes(self, samples: list[Sample]) -> None:
        """The ledger's state of each object not copied by a command that reported it: `xcr
        status --json` (what an operator runs), so the table's OUTCOME says what xcr recorded
        for the objects the queue and the job copied."""
        assert self.xcr is not None
        env = {**os.environ, **self.env}
        for sample in samples:
            if sample.outcome is not None or sample.report is not None:
                continue
            run = subprocess.run([str(self.xcr), "status", f"s3://{self.bucket}/{sample.key}", "--json"],
                                 env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
            status = parse_report(run.stdout.decode(errors="replace").strip()) or {}
            states = [d.get("state") for d in status.get("destinations", []) if isinstance(d, dict)]
            sample.outcome = ",".join(str(s) for s in states) if states else ("not recorded" if run.returncode == 3 else None)

    def pump(self) -> None:
        """Runs the replicate function over the queue until it has been idle for 3 s: the
        notifications S3 sent for the uploads are the only input."""
        assert self.xcr is not None
        argv = [str(self.xcr), "pump", "--until-idle", "3", "--json"]
        started = time.monotonic()
        run = subprocess.run(argv, env={**os.environ, **self.env}, stdin=subprocess.DEVNULL,
                             capture_output=True, timeout=self.timeout)
        stats = parse_report(run.stdout.decode(errors="replace").strip()) or {}
        if run.returncode != 0:
            tail = run.stderr.decode(errors="replace").strip().splitlines()[-5:]
            raise DemoError(f"xcr pump failed ({run.returncode}): " + " | ".join(tail))
        print(f"xcr pump: {stats.get('messages', '?')} messages in {stats.get('batches', '?')} batches, "
              f"{stats.get('failed', '?')} failed, in {time.monotonic() - started:.1f} s")

    def audit(self) -> list[str]:
        """`xcr audit s3://BUCKET --json`: lists both sides and compares every key by size,
        checksum and metadata. Every sample went through xcr, so the audit must find no drift
        and nothing it cannot verify (the ledger vouches for the multipart copies). Returns the
        problems found."""
        assert self.xcr is not None
        argv = [str(self.xcr), "audit", f"s3://{self.bucket}", "--json"]
        run = subprocess.run(argv, env={**os.environ, **self.env}, stdin=subprocess.DEVNULL,
                             capture_output=True, timeout=self.timeout)
        lines = [json.loads(l) for l in run.stdout.decode(errors="replace").splitlines() if l.strip().startswith("{")]
        counts = next((l["counts"] for l in lines if "counts" in l), None)
        if counts is None or run.returncode not in (0, 1):
            tail = run.stderr.decode(errors="replace").strip().splitlines()[-5:]
            raise DemoError(f"xcr audit failed ({run.returncode}): " + " | ".join(tail))
        print(f"xcr audit: {counts['compared']} compared, {counts['matching']} matching, {counts['missing']} missing, "
              f"{counts['different']} different, {counts['extra']} extra, {counts['unverifiable']} unverifiable")
        problems = [f"{l['kind']} {l['key']!r}: {l['reason']}" for l in lines if "kind" in l]
        if run.returncode != 0 and not problems:
            problems.append(f"xcr audit exit {run.returncode}")
        return problems

    # c. ---------------------------------------------------------------------

    def verify(self, sample: Sample) -> None:
        problems = sample.problems
        name = dig(sample.report, "destination", "name") or sample.key
        if name != sample.key:
            problems.append(f"destination name {name!r} differs from the key")
        blob = self.dest.get_blob(name)
        if blob is None:
            problems.append("missing in GCS")
            return
        # A fresh Blob, not blob.media_link: the emulator's mediaLink does not
        # escape '?' and '#'. raw_download: gzip objects must not be transcoded.
        data = self.dest.blob(name).download_as_bytes(raw_download=True)
        source_crc = crc32c_b64(sample.data)
        sample.dest_crc = blob.crc32c

        if len(data) != len(sample.data):
            problems.append(f"size {len(data):,} in GCS, {len(sample.data):,} in S3")
        elif data != sample.data:
            problems.append(f"bytes differ from offset {first_difference(data, sample.data):,}")
        if blob.crc32c != source_crc:
            problems.append(f"GCS crc32c {blob.crc32c} != {source_crc}")
        reported = dig(sample.report, "crc32c")
        if reported is not None and reported != source_crc:
            problems.append(f"xcr reported crc32c {reported} != {source_crc}")
        s3_crc = sample.head.get("ChecksumCRC32C")
        if s3_crc is not None and not sample.multipart and s3_crc != source_crc:
            problems.append(f"S3 stored crc32c {s3_crc} != {source_crc} (emulator?)")

        for s3_field, blob_field in CONTENT_FIELDS.items():
            want = sample.head.get(s3_field) or None
            got = getattr(blob, blob_field) or None
            if want != got:
                problems.append(f"{blob_field} {got!r} != {want!r}")
        metadata = blob.metadata or {}
        for key, want in (sample.head.get("Metadata") or {}).items():
            if metadata.get(key) != want:
                problems.append(f"metadata {key}={metadata.get(key)!r} != {want!r}")
        for key, want in ((PROVENANCE_BUCKET, self.bucket), (PROVENANCE_KEY, sample.key)):
            if key not in metadata:
                problems.append(f"no {key} metadata")
            # Stored as is or percent-encoded (header-safe): both name the source.
            elif want not in (metadata[key], urllib.parse.unquote(metadata[key])):
                problems.append(f"metadata {key}={metadata[key]!r} != {want!r}")


def first_difference(a: bytes, b: bytes, block: int = 64 * KIB) -> int:
    """Offset of the first byte where a and b differ (blockwise: fast on 70 MiB)."""
    for start in range(0, min(len(a), len(b)), block):
        if a[start : start + block] != b[start : start + block]:
            return next(i for i in range(start, start + block) if a[i] != b[i])
    return min(len(a), len(b))


def parse_report(stdout: str) -> dict[str, Any] | None:
    """xcr's JSON report: the whole stdout, or failing that its last JSON line."""
    candidates = [stdout] + stdout.splitlines()[::-1]
    for text in candidates:
        try:
            doc = json.loads(text)
        except ValueError:
            continue
        if isinstance(doc, dict):
            return doc
    return None


# --------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------


def print_table(samples: list[Sample]) -> None:
    rows = [("KEY", "SIZE", "SRC CRC32C", "DST CRC32C", "OUTCOME", "VERDICT")]
    for s in samples:
        outcome = dig(s.report, "outcome") or s.outcome or ("error" if s.xcr_error else "-")
        verdict = "OK" if not s.problems else shorten(s.problems[0], 48) + (
            f" (+{len(s.problems) - 1})" if len(s.problems) > 1 else ""
        )
        rows.append(
            (shorten(s.key, 46), human(len(s.data)), crc32c_b64(s.data), s.dest_crc or "-", str(outcome), verdict)
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for i, row in enumerate(rows):
        cells = [row[0].ljust(widths[0]), row[1].rjust(widths[1])] + [
            cell.ljust(width) for cell, width in zip(row[2:-1], widths[2:])
        ]
        print("  ".join(cells + [row[-1]]))
        if i == 0:
            print("  ".join("-" * w for w in widths) + "  " + "-" * 7)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="demo.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", required=True, type=Path, help="the stack's local.env (scripts/stack.py up)")
    parser.add_argument("--xcr", help="xcr binary (default: target/release/xcr, else target/debug/xcr)")
    parser.add_argument(
        "--via",
        choices=("queue", "cli"),
        default="queue",
        help="queue (default): S3 notifications -> SQS -> `xcr pump` runs the replicate function; "
        "cli: one `xcr replicate` per object",
    )
    parser.add_argument(
        "--no-replicate",
        action="store_true",
        help="skip step b: only upload, then verify objects replicated some other way",
    )
    parser.add_argument("--seed", type=int, default=20261123, help="seed for the sample bytes")
    parser.add_argument("--timeout", type=float, default=600, help="seconds allowed for one xcr run")
    args = parser.parse_args(argv)

    try:
        env = read_env(args.env)
        xcr = None if args.no_replicate else find_xcr(args.xcr)
        try:
            demo = Demo(env, xcr, args.timeout)
        except ImportError as err:
            raise DemoError(f"{err}: run with the project's virtualenv (.venv/bin/python)") from err
        samples = build_samples(args.seed)
        total = sum(len(s.data) for s in samples)
        backfill: list[Sample] = []
        on_demand: list[Sample] = []
        if args.via == "queue" and xcr is not None:
            # Objects that were there before replication was switched on: no notification
            # ever announces them; a migration job has to find them, or a person asks the API.
            backfill = build_backfill(args.seed)
            on_demand = build_api_samples(args.seed)
            with demo.notifications_off():
                for sample in backfill + on_demand:
                    demo.upload(sample)
            print(f"uploaded {len(backfill) + len(on_demand)} objects under {BACKFILL_PREFIX} and {API_PREFIX} "
                  "with bucket notifications off")

        started = time.monotonic()
        for sample in samples:
            demo.upload(sample)
        print(f"uploaded {len(samples)} objects ({human(total)}) to s3://{demo.bucket} in {time.monotonic() - started:.1f} s")

        if xcr is not None and args.via == "queue":
            print("replicating through S3 notifications -> SQS -> replicate function (xcr pump) ...")
            demo.pump()
            print(f"migration job over {BACKFILL_PREFIX} (objects no notification announced) ...")
            demo.migrate(BACKFILL_PREFIX, len(backfill))
            print(f"asking for {len(on_demand)} objects through the HTTP API (xcr serve) ...")
            demo.via_api(on_demand)
            samples = backfill + on_demand + samples
            demo.outcomes(samples)
        elif xcr is not None:
            print(f"replicating each with {xcr} replicate s3://{demo.bucket}/KEY --json ...")
            for sample in samples:
                demo.replicate(sample)
            print(f"xcr ran {len(samples)} times in {sum(s.xcr_seconds for s in samples):.1f} s")

        started = time.monotonic()
        for sample in samples:
            if sample.xcr_error is None:
                demo.verify(sample)
        print(f"verified against gs://{demo.dest.name} in {time.monotonic() - started:.1f} s")
        # Last: the drift audit over the whole bucket must agree that nothing is missing,
        # different, extra or unverifiable.
        audit_problems = demo.audit() if xcr is not None else []
        print()
    except DemoError as err:
        print(f"demo.py: error: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # unreachable emulator and the like: say so plainly
        module = type(err).__module__
        if module.startswith(("botocore", "boto3", "urllib3", "requests", "google")):
            print(f"demo.py: error: {type(err).__name__}: {err}", file=sys.stderr)
            print("  is the stack up? (scripts/stack.py status --dir DIR)", file=sys.stderr)
            return 2
        raise

    print_table(samples)
    failed = [s for s in samples if s.problems]
    for sample in failed:
        print(f"\nFAILED {sample.key!r} ({human(len(sample.data))}):")
        for problem in sample.problems:
            print(f"  - {problem}")
        if sample.xcr_error and sample.xcr_stderr:
            print("  xcr stderr (last lines):")
            for line in sample.xcr_stderr.splitlines()[-10:]:
                print(f"    {line}")
    if audit_problems:
        print("\nFAILED xcr audit:")
        for problem in audit_problems:
            print(f"  - {problem}")
    # Every object the demo copied: in queue mode the backfill and API ones too.
    total = sum(len(s.data) for s in samples)
    print(f"\n{len(samples)} objects, {human(total)}, S3 -> GCS")
    print(f"demo: {len(samples) - len(failed)} passed, {len(failed)} failed"
          + (f"; audit: {len(audit_problems)} findings" if xcr is not None else ""))
    return 1 if failed or audit_problems else 0


if __name__ == "__main__":
    sys.exit(main())
