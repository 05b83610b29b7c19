"""The harness's markdown report: one table per run, ratios against the baseline."""

from __future__ import annotations


def report(args, machine, results, per_photo, stages, shed) -> str:
    baselines = {m.workload: m for _, m in results if m.mode.startswith("baseline")}
    settings = ", ".join(f"{k}={v}" for k, v in args.env.items()) or "defaults"
    lines = [
        f"Machine: {machine}. Pack: `{args.pack_dir.name}`, detector at 640x640. "
        f"Server settings: {settings}. "
        f"Sequential passes: {1 if args.quick else args.repeats} over each photo set; "
        f"concurrent clients: {args.duration:g} s each.",
        "",
        "| workload | photos | mode | requests | req/s | faces/s | median ms | p99 ms | "
        "x baseline (faces/s) | errors | GPU util | rows per pass (mean x passes) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, m in results:
        base = baselines[m.workload]
        ratio = m.faces_per_s / base.faces_per_s if base.faces_per_s else float("nan")
        gpu = "" if m.gpu_util is None else f"{m.gpu_util:.0f}%"
        lines.append(
            f"| {m.workload} | {label} | {m.mode} | {len(m.latencies)} | {m.requests_per_s:.1f} | "
            f"{m.faces_per_s:.1f} | {m.percentile_ms(0.5):.1f} | {m.percentile_ms(0.99):.1f} | "
            f"{ratio:.2f} | {m.errors} | {gpu} | {m.batches} |"
        )
    if per_photo:
        lines += [
            "",
            "Many faces in one request (`/v1/multi-embeddings`, maxResults 750, one client):",
            "",
            "| photo | faces | baseline faces/s | served faces/s | x baseline |",
            "|---|---|---|---|---|",
        ]
        for photo, (base, served) in per_photo.items():
            lines.append(
                f"| {photo} | {base.faces // max(1, len(base.latencies))} | "
                f"{base.faces_per_s:.1f} | {served.faces_per_s:.1f} | "
                f"{served.faces_per_s / base.faces_per_s:.2f} |"
            )
    lines += [
        "",
        "One `/v1/feature` request in stages (median over the single-face photos, one client, "
        "from the `Server-Timing` header):",
        "",
        *stages,
        "",
        f"Responses shed with 503 during the run: {shed}",
    ]
    return "\n".join(lines) + "\n"
