"""``modelbuild predict``: run a saved Core ML package (ML program or neural network) on a
person's inputs, on Linux.

The "Xcode preview" of Linux: images (PNG/JPEG) or arrays (.npy, or one .npz keyed by
input name) in; output shapes and summary values printed; outputs saved to an .npz.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modelbuild.errors import UserError

COLOR_SPACES = {10: "GRAYSCALE", 20: "RGB", 30: "BGR"}


def parse_inputs(pairs: list[str]) -> dict[str, Path]:
    named: dict[str, Path] = {}
    for pair in pairs:
        name, sep, file = pair.partition("=")
        if not sep or not name or not file:
            raise UserError(f"--input: expected NAME=FILE, got {pair!r}")
        named[name] = Path(file)
    return named


def read_input(name: str, path: Path, description: Any) -> Any:
    import numpy as np

    if not path.is_file():
        raise UserError(f"--input {name}: file not found: {path}")
    kind = description.type.WhichOneof("Type")
    if path.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp"):
        if kind != "imageType":
            raise UserError(f"--input {name}: {path.name} is an image, but {name!r} takes a tensor (.npy)")
        from PIL import Image

        layout = COLOR_SPACES.get(description.type.imageType.colorSpace, "RGB")
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("L" if layout == "GRAYSCALE" else "RGB"))
        if layout == "GRAYSCALE":
            pixels = pixels[..., None]
        elif layout == "BGR":
            pixels = pixels[..., ::-1]  # the model's channel order, as Core ML would feed it
        check_image_size(name, pixels.shape[0], pixels.shape[1], description.type.imageType)
        return np.ascontiguousarray(pixels[None])
    if path.suffix.lower() == ".npy":
        array = np.load(path, allow_pickle=False)
        if kind == "imageType":
            if array.dtype != np.uint8 or array.ndim not in (3, 4):
                raise UserError(f"--input {name}: an image input takes uint8 HWC pixels, got {array.dtype} {list(array.shape)}")
            array = array if array.ndim == 4 else array[None]
            check_image_size(name, array.shape[1], array.shape[2], description.type.imageType)
        return array
    raise UserError(f"--input {name}: expected .png, .jpg, .npy or .npz, got {path.name!r}")


def check_image_size(name: str, height: int, width: int, image_type: Any) -> None:
    ranges = image_type.imageSizeRange
    if image_type.WhichOneof("SizeFlexibility") == "imageSizeRange":
        for what, size, bounds in (("height", height, ranges.heightRange), ("width", width, ranges.widthRange)):
            upper = bounds.upperBound if bounds.upperBound > 0 else None
            if size < bounds.lowerBound or (upper is not None and size > upper):
                raise UserError(
                    f"--input {name}: image {what} {size} is outside the model's range {bounds.lowerBound}..{upper if upper is not None else 'unbounded'}"
                )
    elif image_type.WhichOneof("SizeFlexibility") is None and image_type.height and (height, width) != (image_type.height, image_type.width):
        raise UserError(f"--input {name}: the model takes {image_type.width}x{image_type.height} images, got {width}x{height}")


def predict(package: Path, pairs: list[str], out: Path | None) -> tuple[list[str], Path]:
    """Run the package; return the lines to print and where the outputs were saved."""
    import numpy as np
    from google.protobuf.message import DecodeError

    from modelbuild.coreml.executors import package_runner, unsupported_errors

    bare_model = package.suffix == ".mlmodel" and package.is_file()
    if not bare_model and not (package / "Manifest.json").is_file():
        raise UserError(f"{package}: not an .mlpackage (no Manifest.json) or an .mlmodel file")
    try:
        runner = package_runner(package)
    except unsupported_errors() as exc:
        raise UserError(f"{package.name}: {exc}") from None
    except DecodeError:
        raise UserError(f"{package}: the model spec is not a Core ML model (truncated or corrupt); build it again") from None
    except (OSError, ValueError) as exc:
        raise UserError(f"{package}: {exc}") from None
    named = parse_inputs(pairs)
    descriptions = {d.name: d for d in runner.spec.description.input}
    if len(named) == 1 and next(iter(named.values())).suffix == ".npz" and next(iter(named)) == "all":
        with np.load(next(iter(named.values())), allow_pickle=False) as data:
            feeds = {k: data[k] for k in data.files}
    else:
        unknown = sorted(set(named) - set(descriptions))
        if unknown:
            raise UserError(f"--input: the model has no input {unknown[0]!r}; its inputs: {', '.join(descriptions)}")
        feeds = {name: read_input(name, path, descriptions[name]) for name, path in named.items()}
    missing = [n for n in descriptions if n not in feeds]
    if missing:
        raise UserError(f"--input: missing {', '.join(missing)} (give NAME=FILE for each input: {', '.join(descriptions)})")
    try:
        outputs = runner.run(feeds)
    except unsupported_errors() as exc:
        raise UserError(str(exc)) from None
    lines, arrays = [], {}
    labels = runner.class_labels()
    for name, value in outputs.items():
        if isinstance(value, str):
            lines.append(f"{name}: {value!r}")
            continue
        array = value.float().numpy() if hasattr(value, "float") else np.asarray(value)
        arrays[name] = array
        lines.append(f"{name}: shape {list(array.shape)}, min {array.min():.4g}, max {array.max():.4g}, mean {array.mean():.4g}")
        if labels and array.size == len(labels):
            top = np.argsort(-array.reshape(-1))[:5]
            lines.append("  top: " + ", ".join(f"{labels[i]} {array.reshape(-1)[i]:.3f}" for i in top))
    destination = out or Path.cwd() / f"{package.stem}.outputs.npz"
    np.savez(destination, **arrays)  # type: ignore[arg-type]  # numpy stubs type the first keyword as allow_pickle
    return lines, destination
