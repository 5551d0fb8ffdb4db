#!/usr/bin/env python3
"""`make bench`: measure xcr against the limits of the rig it runs on.

Starts a private local stack (scripts/stack.py), then in the same run:

* P1 large object: one object (1 GiB by default) copied by `xcr replicate`, next to
  - a raw GET of the same object from the S3 emulator,
  - a raw resumable upload of the same bytes into the GCS emulator with xcr's chunk size,
  - a raw single-request (media) upload, for reference;
  and the ratios of xcr's time to each.
* P3 memory: peak RSS and CPU seconds of the `xcr replicate` process.
* Threshold: single-request vs resumable upload times at sizes around the default
  threshold, the measurement behind XCR_RESUMABLE_THRESHOLD's default.

Benchmarks report, they do not fail on a slow machine: exit status is non-zero only if a
copy fails. Results go to stdout as a table and to target/bench/bench.json.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MiB = 1024 * 1024


def load_env(path: Path) -> dict[str, str]:
    env = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#") and "=" in line:
            k, v = line.split("=", 1)
            env[k.strip()] = v.strip()
    return env


def _vm_hwm_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def xcr_copy(xcr: str, env: dict[str, str], bucket: str, key: str, extra_env: dict[str, str] | None = None) -> dict:
    """One `xcr replicate` in a process of its own. Peak RSS is the kernel's high-water mark
    (VmHWM) of that process, sampled every 5 ms while it runs: ru_maxrss of a child forked from
    this (large) Python process would include the pages it inherited before exec."""
    full_env = {**os.environ, **env, "XCR_LOG": "warn", **(extra_env or {})}
    start = time.perf_counter()
    proc = subprocess.Popen([xcr, "replicate", f"s3://{bucket}/{key}", "--json"], env=full_env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0
    while True:
        hwm = _vm_hwm_kib(proc.pid)
        if hwm is not None:
            peak = max(peak, hwm)
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        time.sleep(0.005)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode != 0:
        raise SystemExit(f"xcr replicate s3://{bucket}/{key} failed ({proc.returncode}):\n{err[-2000:]}")
    return {"wall_s": wall, "peak_rss_mib": peak / 1024, "cpu_s": usage.ru_utime + usage.ru_stime}


def http_conn(base: str) -> http.client.HTTPConnection:
    u = urllib.parse.urlparse(base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=600)
    return conn


def raw_s3_get(env: dict[str, str], bucket: str, key: str) -> float:
    """GET the whole object from the S3 emulator and discard it, as fast as Python reads."""
    conn = http_conn(env["AWS_ENDPOINT_URL"])
    start = time.perf_counter()
    # moto accepts any signature but wants an Authorization header.
    conn.request("GET", f"/{bucket}/{urllib.parse.quote(key)}", headers={
        "Authorization": "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0"})
    resp = conn.getresponse()
    if resp.status != 200:
        raise SystemExit(f"raw GET answered {resp.status}")
    total = 0
    while chunk := resp.read(8 * MiB):
        total += len(chunk)
    conn.close()
    return time.perf_counter() - start


def raw_gcs_resumable(env: dict[str, str], bucket: str, name: str, data: memoryview, chunk: int) -> float:
    base = env["STORAGE_EMULATOR_HOST"]
    start = time.perf_counter()
    conn = http_conn(base)
    body = json.dumps({"name": name}).encode()
    conn.request("POST", f"/upload/storage/v1/b/{bucket}/o?uploadType=resumable", body=body, headers={
        "Content-Type": "application/json", "X-Upload-Content-Length": str(len(data))})
    resp = conn.getresponse()
    resp.read()
    session = resp.getheader("Location")
    conn.close()
    u = urllib.parse.urlparse(session)
    path = u.path + "?" + u.query
    total = len(data)
    for off in range(0, total, chunk):
        part = data[off:off + chunk]
        c = http_conn(base)
        c.request("PUT", path, body=bytes(part), headers={
            "Content-Range": f"bytes {off}-{off + len(part) - 1}/{total}", "Content-Length": str(len(part))})
        r = c.getresponse()
        r.read()
        c.close()
        if r.status not in (200, 201, 308):
            raise SystemExit(f"raw resumable chunk answered {r.status}")
    return time.perf_counter() - start


def raw_gcs_single(env: dict[str, str], bucket: str, name: str, data: memoryview) -> float:
    start = time.perf_counter()
    conn = http_conn(env["STORAGE_EMULATOR_HOST"])
    conn.request("POST", f"/upload/storage/v1/b/{bucket}/o?uploadType=media&name={urllib.parse.quote(name, safe='')}",
                 body=bytes(data), headers={"Content-Type": "application/octet-stream"})
    r = conn.getresponse()
    r.read()
    conn.close()
    if r.status != 200:
        raise SystemExit(f"raw single upload answered {r.status}")
    return time.perf_counter() - start


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--xcr", default=str(ROOT / "target/release/xcr"))
    ap.add_argument("--size-mib", type=int, default=int(os.environ.get("BENCH_SIZE_MIB", "1024")))
    ap.add_argument("--quick", action="store_true", help="a 32 MiB object and fewer threshold sizes: checks that it runs")
    args = ap.parse_args()
    size = (32 if args.quick else args.size_mib) * MiB

    import boto3  # noqa: E402  (venv)
    from botocore.config import Config as BotoConfig

    stack_dir = Path(tempfile.mkdtemp(prefix="xcr-bench-"))
    stack = [sys.executable, str(ROOT / "scripts/stack.py")]
    subprocess.run([*stack, "up", "--dir", str(stack_dir)], check=True, stdout=subprocess.DEVNULL)
    try:
        env = load_env(stack_dir / "local.env")
        src, dst = env["XCR_SOURCE_BUCKET"], env["XCR_DEST_BUCKET"]
        chunk = int(os.environ.get("XCR_CHUNK_SIZE", 8 * MiB))
        s3 = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name=env["AWS_REGION"],
                          aws_access_key_id="test", aws_secret_access_key="test",
                          config=BotoConfig(s3={"addressing_style": "path"}))
        print(f"preparing a {size // MiB} MiB object ...", file=sys.stderr)
        data = memoryview(os.urandom(size))
        s3.put_object(Bucket=src, Key="bench/large.bin", Body=bytes(data))

        results: dict = {"date": time.strftime("%Y-%m-%d"), "size_bytes": size, "chunk_bytes": chunk}
        get_s = raw_s3_get(env, src, "bench/large.bin")
        res_s = raw_gcs_resumable(env, dst, "raw/resumable.bin", data, chunk)
        one_s = raw_gcs_single(env, dst, "raw/single.bin", data)
        x = xcr_copy(args.xcr, env, src, "bench/large.bin")
        limit = max(get_s, res_s)
        results["p1"] = {
            "xcr_s": x["wall_s"], "raw_get_s": get_s, "raw_resumable_upload_s": res_s, "raw_single_upload_s": one_s,
            "ratio_vs_slower_raw": x["wall_s"] / limit, "ratio_vs_raw_single": x["wall_s"] / one_s,
        }
        results["p3"] = {"xcr_peak_rss_mib": x["peak_rss_mib"], "xcr_cpu_s": x["cpu_s"],
                         "xcr_cpu_s_per_gib": x["cpu_s"] / (size / (1024 * MiB))}

        # Threshold: the same object size uploaded in one request vs through a session.
        sizes = [1, 8] if args.quick else [1, 4, 8, 16, 32]
        thr = []
        for mib in sizes:
            key = f"bench/thr-{mib}.bin"
            s3.put_object(Bucket=src, Key=key, Body=os.urandom(mib * MiB))
            single = xcr_copy(args.xcr, env, src, key, {"XCR_RESUMABLE_THRESHOLD": str(256 * MiB)})
            resumable = xcr_copy(args.xcr, env, src, key, {"XCR_RESUMABLE_THRESHOLD": "0"})
            thr.append({"size_mib": mib, "single_s": single["wall_s"], "resumable_s": resumable["wall_s"],
                        "single_peak_rss_mib": single["peak_rss_mib"], "resumable_peak_rss_mib": resumable["peak_rss_mib"]})
        results["threshold"] = thr
    finally:
        subprocess.run([*stack, "down", "--dir", str(stack_dir)], stdout=subprocess.DEVNULL)

    out_dir = ROOT / "target/bench"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "bench.json").write_text(json.dumps(results, indent=2))

    p1, p3 = results["p1"], results["p3"]
    print(f"\nxcr bench, {results['date']}, object {size // MiB} MiB, chunk {chunk // MiB} MiB (emulators on loopback)\n")
    print(f"{'P1 large object':34} {'seconds':>9} {'MiB/s':>9} {'xcr / this':>11}")
    for label, secs in [("xcr replicate", p1["xcr_s"]), ("raw S3 GET", p1["raw_get_s"]),
                        ("raw GCS resumable upload", p1["raw_resumable_upload_s"]),
                        ("raw GCS single-request upload", p1["raw_single_upload_s"])]:
        print(f"  {label:32} {secs:9.2f} {size / MiB / secs:9.1f} {p1['xcr_s'] / secs:10.2f}x")
    print(f"  xcr vs the slower of raw GET and same-protocol upload: {p1['ratio_vs_slower_raw']:.2f}x (target <= 1.2x)")
    print("\nP3 memory and CPU of xcr replicate")
    print(f"  peak RSS {p3['xcr_peak_rss_mib']:.1f} MiB (target < 64 MiB), CPU {p3['xcr_cpu_s']:.2f} s = {p3['xcr_cpu_s_per_gib']:.2f} s/GiB")
    print(f"\nThreshold: one request vs a resumable session ({chunk // MiB} MiB chunks)")
    print(f"  {'size':>6} {'single s':>9} {'resumable s':>12} {'single RSS':>11} {'resumable RSS':>14}")
    for t in results["threshold"]:
        print(f"  {t['size_mib']:4} MiB {t['single_s']:9.3f} {t['resumable_s']:12.3f} {t['single_peak_rss_mib']:9.1f} M {t['resumable_peak_rss_mib']:12.1f} M")
    print(f"\nwritten to {out_dir / 'bench.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
