"""make bench: runs every benchmark one after another (never two at once: the
machine has two cores) and prints one Markdown table: each figure, its value,
the baseline it is compared with (measured in the same run, on the same
machine, minutes apart) and the ratio. Writes the table and the raw output of
every benchmark to bench/results/bench_<date>.md and the rows to
bench/results/bench_<date>.csv. Every value is a median of several runs (see
each benchmark's header for how many).

Usage: all.py <build dir>. The benchmarks' own knobs pass through the
environment (RUNS, SECONDS_PER_RUN, EVENTS, TENANTS, FLOOD, BENCH_MIB,
SCALE_TENANTS)."""
import csv
import datetime
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def run(name, argv):
    """Runs one benchmark; returns (its RESULT key/values, its output)."""
    print("== %s: %s" % (name, " ".join(argv)), file=sys.stderr, flush=True)
    t0 = time.time()
    done = subprocess.run(argv, capture_output=True, text=True, cwd=os.path.dirname(HERE))
    if done.returncode != 0:
        sys.exit("%s failed (exit %d):\n%s%s" % (name, done.returncode, done.stdout,
                                                 done.stderr[-3000:]))
    values = {}
    for line in done.stdout.splitlines():
        if line.startswith("RESULT"):
            for kv in line.split()[1:]:
                k, v = kv.split("=", 1)
                values[k] = float(v)
    print("   %.0f s" % (time.time() - t0), file=sys.stderr, flush=True)
    return values, done.stdout


def main():
    build = sys.argv[1] if len(sys.argv) > 1 else "build"
    os.environ.setdefault("SILO_BIN", os.path.abspath(os.path.join(build, "silo")))  # console
    mib = os.environ.get("BENCH_MIB", "1024")
    outputs = {}
    r = {}
    for name, argv in [
        ("storage", [os.path.join(build, "storage_bench")]),
        ("group_commit", [os.path.join(build, "group_commit_bench")]),
        ("keys", [os.path.join(build, "keys_bench")]),
        ("replication", [os.path.join(build, "replication_bench")]),
        ("http", ["bash", "bench/http_bench.sh", os.path.join(build, "silo")]),
        ("api", ["bash", "bench/api_bench.sh", build]),
        ("login", ["bash", "bench/login_bench.sh", build]),
        ("backup", [os.path.join(build, "backup_bench"), "--mib", mib, "--runs", "5"]),
        ("files", ["bash", "bench/files_bench.sh", build]),
        ("realtime", ["bash", "bench/realtime_bench.sh", build]),
        ("console", ["node", "bench/console_bench.mjs"]),
        ("tenants", [sys.executable, "bench/tenants_bench.py", os.path.join(build, "silo")]),
        ("cluster", [sys.executable, "bench/cluster_bench.py", os.path.join(build, "silo")]),
    ]:
        values, outputs[name] = run(name, argv)
        r[name] = values

    s, h, a, lg, b, f, rt, c, t = (r["storage"], r["http"], r["api"], r["login"], r["backup"],
                                   r["files"], r["realtime"], r["console"], r["tenants"])
    gc = r["group_commit"]
    ky = r["keys"]
    rp = r["replication"]
    cl = r["cluster"]
    rows = [
        # figure, value, unit, baseline figure, baseline value
        ("HTTPS /healthz, keep-alive", h["healthz_rps"], "req/s", "", None),
        ("new TLS connections (full handshake each)", h["tls_conn_per_s"], "/s",
         "/healthz keep-alive", h["healthz_rps"]),
        ("server RSS after the load", h["load_rss_kb"] / 1024, "MiB",
         "idle RSS", h["idle_rss_kb"] / 1024),
        ("record read by id (API token)", a["read_rps"], "req/s", "/healthz", a["healthz_rps"]),
        ("record list, 50 per page", a["list_rps"], "req/s", "/healthz", a["healthz_rps"]),
        ("record create", a["create_rps"], "req/s", "/healthz", a["healthz_rps"]),
        ("record update", a["update_rps"], "req/s", "/healthz", a["healthz_rps"]),
        ("?at= read p99, %s events" % "{:,}".format(int(os.environ.get("EVENTS", "1000000"))),
         a["at_p99_ms"], "ms", "", None),
    ]
    for key, label in [("write", "200 single-row write transactions"),
                       ("batch", "10 transactions of 1,000 rows"),
                       ("warm_read", "100,000 point reads, warm cache"),
                       ("cold_read", "20,000 point reads, 16-page cache"),
                       ("scan", "full scan of 20,000 rows")]:
        rows.append(("cipher VFS: " + label, s[key + "_cipher_ms"], "ms",
                     "plain SQLite", s[key + "_plain_ms"]))
    rows += [
        ("durable writes of one tenant, 16 writers, group commit", gc["grouped16_wps"], "/s",
         "one COMMIT per write", gc["single16_wps"]),
        ("durable writes of one tenant, 1 writer, group commit", gc["grouped1_wps"], "/s",
         "one COMMIT per write", gc["single1_wps"]),
        ("sync-replicated writes, 16 writers, %.1f ms acknowledgement awaited after the write "
         "lock" % gc["ack_ms"], gc["ack_after_lock_wps"], "/s", "awaited under the lock",
         gc["ack_in_lock_wps"]),
        ("silo keys rotate-master, keyring of %d keys" % ky["rotate_keys"], ky["rotate_s"], "s",
         "as many atomic file writes", ky["rotate_write_s"]),
        ("checkpoint of an open tenant (sign, keep)", ky["checkpoint_ms"], "ms",
         "atomic write of its bytes", ky["checkpoint_write_ms"]),
        ("tenant against its kept checkpoint", ky["check_ms"], "ms", "", None),
        ("commits of one tenant shipped async to 2 followers (in process, TLS loopback)",
         rp["async_cps"], "/s", "replication off", rp["off_cps"]),
        ("commits of one tenant, sync (one follower's fsync per commit)", rp["sync_cps"], "/s",
         "replication off", rp["off_cps"]),
        ("record creates, 3 nodes, async to 2 followers", cl["async_cps"], "/s",
         "replication off", cl["off_cps"]),
        ("record creates, 3 nodes, sync", cl["sync_cps"], "/s", "replication off", cl["off_cps"]),
        ("record reads by id, 3 nodes, sync", cl["sync_rps"], "/s", "replication off",
         cl["off_rps"]),
        ("bytes shipped to each follower per record create", cl["bytes_per_create"], "B", "",
         None),
        ("failover: kill to the first write accepted, max (5 s lease)", cl["failover_max_s"], "s",
         "p50", cl["failover_p50_s"]),
        ("catch-up of a new follower, %.0f MiB tenant" % cl["catchup_mib"], cl["catchup_s"], "s",
         "", None),
        ("failover of a %.0f MiB tenant: first write on the new primary to the other follower "
         "holding its chain (snapshots: %d)" % (cl["takeover_mib"], cl["takeover_snapshots"]), cl["takeover_s"],
         "s", "", None),
        ("a %.0f MiB tenant's old primary restarted after a failover, SIGTERM: start to holding "
         "the new primary's chain (snapshots: %d)" % (cl["restart_mib"], cl["restart_term_snapshots"]),
         cl["restart_term_s"], "s", "SIGKILL (snapshots: %d)" % cl["restart_kill_snapshots"],
         cl["restart_kill_s"]),
        ("replica lag p99, async, open loop %.0f creates/s over 10 tenants" % cl["lag_rate"],
         cl["lag_async_p99_ms"], "ms", "p50", cl["lag_async_p50_ms"]),
        ("replica lag p99, sync, open loop %.0f creates/s over 10 tenants" % cl["lag_rate"],
         cl["lag_sync_p99_ms"], "ms", "p50", cl["lag_sync_p50_ms"]),
        ("upload of a %d MiB file, 3 nodes, sync (blob on both followers)" % cl["upload_mib"],
         cl["upload_sync_s"], "s", "replication off", cl["upload_off_s"]),
        ("resumable upload of a %d MiB file in PATCHes, 3 nodes, sync (each PATCH on both "
         "followers)" % cl["upload_mib"], cl["tus_sync_s"], "s", "replication off",
         cl["tus_off_s"]),
        ("write that reopens a closed %.0f MiB tenant, sync (snapshots: %d)" %
         (cl["reopen_mib"], cl["reopen_snapshots"]), cl["reopen_ms"], "ms", "tenant open",
         cl["reopen_open_ms"]),
        ("etcd CPU of an idle 3-node cluster, %d other tenants" % cl["etcd_tenants"],
         cl["etcd_idle_pct"], "% of a core", "full lists every 250 ms on 3 nodes (computed)",
         cl["etcd_full_list_ms"] * 1.2),
        ("login (Argon2id 19 MiB, t=2)", lg["login_per_s"], "/s", "", None),
        ("read p99 under a login flood, default limits", lg["b_flood_p99_ms"], "ms",
         "read p99 idle", lg["b_idle_p99_ms"]),
        ("read p99 under a login flood, limits off", lg["a_flood_p99_ms"], "ms",
         "read p99 idle", lg["a_idle_p99_ms"]),
        ("backup of a %.0f MB tenant" % b["db_mb"], b["backup_mbs"], "MB/s", "cp of the file",
         b["cp_mbs"]),
        ("restore (verified, as a new tenant)", b["restore_mbs"], "MB/s", "cp of the file",
         b["cp_mbs"]),
        ("restore drill RTO", b["drill_s"], "s", "", None),
        ("backup RSS over idle, tenant + %d MiB of files" % b["files_mib"],
         b["backup_rss_over_idle_mib"], "MiB", "database size", b["db_mb"]),
        ("restore RSS over idle (files re-sealed)", b["restore_rss_over_idle_mib"], "MiB",
         "database size", b["db_mb"]),
        ("silo tenant rekey, %.0f MB tenant + %d MiB of files" % (b["db_mb"], b["files_mib"]),
         b["rekey_s"], "s", "cp of the database file", b["rekey_cp_s"]),
        ("writes refused during the rekey (the pause)", b["rekey_pause_s"], "s", "", None),
        ("write p99 during the rekey (refused ones retried)", b["rekey_write_p99_ms"], "ms",
         "the same writer alone", b["rekey_write_idle_p99_ms"]),
        ("longest write during the rekey", b["rekey_write_max_ms"], "ms",
         "the same writer alone", b["rekey_write_idle_max_ms"]),
        ("file upload over HTTPS, 1 GiB", f["upload_mbps"], "MB/s", "unencrypted control",
         f["control_upload_mbps"]),
        ("file download over HTTPS, 1 GiB", f["download_mbps"], "MB/s", "unencrypted control",
         f["control_download_mbps"]),
        ("file upload over HTTPS, 1 GiB", f["upload_mbps"], "MB/s", "cp + sync", f["cp_mbps"]),
        ("1-byte range mid-file, TTFB p99", f["ttfb_p99_ms"], "ms", "p50", f["ttfb_p50_ms"]),
        ("server peak RSS over idle, during a 1 GiB upload", f["upload_rss_kib"] / 1024, "MiB",
         "", None),
        ("server peak RSS over idle, during a 1 GiB download", f["download_rss_kib"] / 1024,
         "MiB", "", None),
        ("realtime deliveries, 1,000 TLS WebSocket subscribers", rt["deliveries_1000"],
         "/s", "/healthz", rt["healthz_rps"]),
        ("realtime deliveries, 5,000 connections", rt["deliveries_5000"], "/s", "/healthz",
         rt["healthz_rps"]),
        ("record create-to-delivery p99, 1,000 subscribers", rt["record_p99_ms"], "ms", "p50",
         rt["record_p50_ms"]),
        ("others' p99 with one subscriber stalled", rt["p99_stalled_ms"], "ms",
         "none stalled", rt["p99_1000_ms"]),
        ("realtime connect + authenticate + join", rt["joins_per_s"], "/s", "", None),
        ("server RSS per idle realtime connection (%d held)" % rt["idle_held"],
         rt["rss_per_idle_kb"], "KiB", "", None),
        ("console first load (HTML + JS + CSS, gzip)", c["first_load_kib"], "KiB",
         "whole console", c["whole_kib"]),
        ("console sign-in first contentful paint, cold", c["fcp_ms"], "ms",
         "plain text page, cold", c["fcp_floor_ms"]),
        ("console record list (10,000 records): click to 50 rows", c["list_tti_ms"], "ms",
         "its fetch alone", c["list_fetch_ms"]),
        ("tenant creation over %s tenants" % "{:,}".format(int(t["tenants"])),
         t["create_all_rps"], "/s", "over the first 2,000", t["create_first_rps"]),
        ("cold authenticated read, p99 (database not open)", t["cold_p99_ms"], "ms",
         "/healthz p50, same connection", t["healthz_p50_ms"]),
        ("cold authenticated read, p50", t["cold_p50_ms"], "ms", "warm read p50",
         t["warm_p50_ms"]),
        ("server RSS after touching every tenant", t["rss_touched_mib"], "MiB",
         "after a restart", t["rss_restart_mib"]),
        ("disk per empty tenant", t["disk_tenant_kib"], "KiB", "", None),
    ]

    def fmt(v):
        return "%.3f" % v if v < 10 else "{:,.0f}".format(v) if v >= 100 else "%.1f" % v

    table = ["| figure | value | baseline (same run) | ratio |", "|---|---:|---:|---:|"]
    for fig, value, unit, base_name, base in rows:
        baseline = "%s: %s %s" % (base_name, fmt(base), unit) if base is not None else "—"
        ratio = "%.2f" % (value / base) if base else "—"
        table.append("| %s | %s %s | %s | %s |" % (fig, fmt(value), unit, baseline, ratio))
    text = "\n".join(table)
    print(text)

    day = datetime.date.today().isoformat()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=os.path.dirname(HERE)).stdout.strip()
    results = os.path.join(HERE, "results")
    with open(os.path.join(results, "bench_%s.csv" % day), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["figure", "value", "unit", "baseline", "baseline_value", "ratio"])
        for fig, value, unit, base_name, base in rows:
            w.writerow([fig, "%.4g" % value, unit, base_name, "" if base is None else "%.4g" % base,
                        "" if not base else "%.3f" % (value / base)])
    with open(os.path.join(results, "bench_%s.md" % day), "w") as f:
        f.write("# make bench, %s (commit %s, %d cores)\n\n%s\n" % (day, commit,
                                                                   os.cpu_count(), text))
        for name, out in outputs.items():
            f.write("\n## %s\n\n```\n%s```\n" % (name, out))


if __name__ == "__main__":
    main()
