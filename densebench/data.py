"""Evaluation and timing images: Tiny ImageNet-200, a synthetic set, or any ImageFolder.

Tiny ImageNet-200 comes from the official archive (MD5-checked). Only what the
benchmark needs is extracted (the validation split and the class lists), into a
temporary directory that is verified and then renamed into place, so a failure never
leaves a half-extracted tree. Archive members are checked before anything is written:
absolute paths, ``..`` components and links make the whole archive refused.

Labels are ImageNet-1k class indices (the synset order timm ships), so ImageNet weights
give real top-1/top-5 accuracy on Tiny ImageNet's 200 classes.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import stat
import tempfile
import time
import urllib.request
import zipfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from PIL import Image, UnidentifiedImageError

from .errors import DataError
from .model import reachable

TINY_IMAGENET_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
TINY_IMAGENET_MD5 = "90528d7ca1a48142e341f4ef8d21d0de"
TINY_IMAGENET_BYTES = 248_100_043
TINY_IMAGENET_DIR = "tiny-imagenet-200"
COMPLETE_MARKER = ".densebench-complete"
# Caps for what an archive may expand to and what a download may grow to.
MAX_EXTRACT_BYTES = 1 << 30
MAX_DOWNLOAD_BYTES = 512 << 20

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class DatasetInfo:
    requested: str
    source: str  # "tiny-imagenet" | "synthetic" | "folder"
    path: str | None = None
    split: str | None = None
    images_available: int = 0
    images_used: int = 0
    label_space: str = "none"  # "imagenet-1k" | "none"
    fallback_reason: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "summary": self.describe()}

    def describe(self) -> str:
        where = f" at {self.path}" if self.path else ""
        text = f"{self.source}{where} ({self.images_used} of {self.images_available} images"
        text += ", ImageNet-1k labels)" if self.label_space == "imagenet-1k" else ", no ImageNet labels)"
        if self.fallback_reason:
            text += f" — fell back from '{self.requested}': {self.fallback_reason}"
        return text


@dataclass
class EvalData:
    """Preprocessed images (CPU float32 NCHW, ImageNet-normalised) and their labels."""

    images: Any  # torch.Tensor (N, 3, S, S)
    labels: Any | None  # torch.Tensor (N,) of ImageNet-1k indices, or None
    info: DatasetInfo

    def batch(self, n: int) -> Any:
        """The first ``n`` images, cycling when the set is smaller than ``n``."""
        import torch  # heavy, optional

        if n <= len(self.images):
            return self.images[:n].clone()
        reps = -(-n // len(self.images))
        return torch.cat([self.images] * reps)[:n].clone()

    def eval_set(self, n: int) -> tuple[Any, Any | None]:
        n = min(n, len(self.images))
        return self.images[:n], None if self.labels is None else self.labels[:n]

    def calibration_set(self, start: int, n: int) -> tuple[Any, bool]:
        """(n calibration images after the first ``start``, whether they overlap the parity set).

        Disjoint from the parity images when the dataset is large enough; a small folder
        reuses images and says so.
        """
        if n <= 0:
            return self.images[:0], False
        if start + n <= len(self.images):
            return self.images[start:start + n], False
        return self.batch(n), True


def imagenet_synsets() -> list[str]:
    """The 1000 ImageNet-1k WordNet ids in class-index order (shipped inside timm)."""
    from timm.data import ImageNetInfo  # heavy, optional: timm imports torch

    return list(ImageNetInfo().label_names())


# ---------------------------------------------------------------- download


def md5_of(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def download(url: str, dest: Path, md5: str | None = None, *, max_bytes: int = MAX_DOWNLOAD_BYTES,
             retries: int = 4, timeout: float = 30.0, backoff: float = 1.0) -> Path:
    """Download ``url`` to ``dest`` with resume, retries with exponential backoff, a size cap and an
    MD5 check before the file is renamed into place. A partial file is kept as ``dest.part`` and
    resumed on the next attempt; a checksum mismatch discards it and starts clean."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    last_error = "no attempt made"
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(backoff * 2 ** (attempt - 1))
        try:
            have = part.stat().st_size if part.exists() else 0
            request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
            with urllib.request.urlopen(request, timeout=timeout) as response:
                resumed = have and response.status == 206
                total = have if resumed else 0
                with open(part, "ab" if resumed else "wb") as fh:
                    while True:
                        try:
                            block = response.read(1 << 16)
                        except http.client.IncompleteRead as cut:
                            fh.write(cut.partial)  # keep what arrived: the next attempt resumes after it
                            raise
                        if not block:
                            break
                        total += len(block)
                        if total > max_bytes:
                            fh.close()
                            part.unlink(missing_ok=True)
                            raise DataError(f"download of {url} exceeded the size cap of {max_bytes} bytes; "
                                            "refusing it")
                        fh.write(block)
                length = response.headers.get("Content-Length")
                if length is not None and total < (have if resumed else 0) + int(length):
                    # the server closed early: keep the partial file, the next attempt resumes after it
                    raise ConnectionError(f"transfer cut short after {total} bytes")
            if md5 and (got := md5_of(part)) != md5:
                part.unlink(missing_ok=True)
                last_error = f"MD5 mismatch (expected {md5}, got {got}); discarded and restarting clean"
                continue
            os.replace(part, dest)
            return dest
        except DataError:
            raise
        except Exception as exc:  # network errors: retry
            last_error = f"{type(exc).__name__}: {exc}"
    raise DataError(f"could not download {url} after {retries + 1} attempts: {last_error}")


# ---------------------------------------------------------------- safe extraction


def _unsafe_member(info: zipfile.ZipInfo) -> str | None:
    name = info.filename
    if "\x00" in name:
        return "contains a NUL byte"
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "is an absolute path"
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if ".." in parts:
        return "escapes the target directory ('..')"
    kind = stat.S_IFMT(info.external_attr >> 16)  # 0 when the archiver recorded no Unix file type
    if kind == stat.S_IFLNK:
        return "is a symbolic link"
    if kind and kind not in (stat.S_IFREG, stat.S_IFDIR):
        return "is not a regular file or directory"
    return None


def check_archive(archive: Path) -> zipfile.ZipFile:
    """Open a zip archive and refuse it if any member is unsafe; the caller closes it."""
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataError(f"{archive} is not a readable zip archive (corrupt or truncated: {exc}); "
                        "delete it and download it again") from None
    for info in zf.infolist():
        problem = _unsafe_member(info)
        if problem:
            zf.close()
            raise DataError(f"refusing archive {archive}: member {info.filename!r} {problem}")
    return zf


def _wanted_tiny_member(name: str) -> bool:
    parts = name.split("/")
    return (len(parts) >= 2 and parts[0] == TINY_IMAGENET_DIR
            and (parts[1] in ("wnids.txt", "words.txt") or parts[1] == "val"))


def extract_tiny_imagenet(archive: Path, root: Path) -> Path:
    """Extract the validation split of a Tiny ImageNet-200 archive into ``root`` atomically."""
    root.parent.mkdir(parents=True, exist_ok=True)
    if not os.access(root.parent, os.W_OK):
        raise DataError(f"cannot extract into {root.parent}: the directory is not writable "
                        "(choose another with --densebench-data-dir)")
    tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=root.parent))
    try:
        with check_archive(archive) as zf:
            members = [i for i in zf.infolist() if _wanted_tiny_member(i.filename)]
            if not members:
                raise DataError(f"{archive} has no {TINY_IMAGENET_DIR}/val/ directory: not a Tiny ImageNet-200 "
                                "archive")
            total = sum(i.file_size for i in members)
            if total > MAX_EXTRACT_BYTES:
                raise DataError(f"{archive} would expand to {total} bytes, over the cap of {MAX_EXTRACT_BYTES}")
            try:
                for info in members:
                    zf.extract(info, tmp)
            except (zipfile.BadZipFile, OSError, EOFError, zipfile.LargeZipFile) as exc:
                raise DataError(f"{archive} is corrupt or truncated ({type(exc).__name__}: {exc}); delete it "
                                "and download it again") from None
        extracted = tmp / TINY_IMAGENET_DIR
        val_annotations(extracted)  # verify before it goes into place
        (extracted / COMPLETE_MARKER).write_text(f"extracted from {archive.name}\n", encoding="utf-8")
        if root.exists():
            shutil.rmtree(root)
        os.replace(extracted, root)
        return root
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def val_annotations(root: Path) -> list[tuple[Path, str]]:
    """(image path, wnid) pairs of the validation split, checked against the files on disk."""
    ann = root / "val" / "val_annotations.txt"
    if not ann.is_file():
        raise DataError(f"{ann} is missing: not a Tiny ImageNet-200 tree")
    pairs: list[tuple[Path, str]] = []
    for lineno, line in enumerate(ann.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        cols = line.split("\t")
        if len(cols) < 2 or not cols[1].startswith("n"):
            raise DataError(f"{ann}:{lineno}: expected 'FILE<TAB>WNID<TAB>...', got {line[:80]!r}")
        image = root / "val" / "images" / cols[0]
        if not image.is_file():
            raise DataError(f"{ann}:{lineno}: {image} is listed but missing")
        pairs.append((image, cols[1]))
    if not pairs:
        raise DataError(f"{ann} lists no images")
    return sorted(pairs)


def prepare_tiny_imagenet(data_dir: Path, *, download_ok: bool, md5: str = TINY_IMAGENET_MD5,
                          url: str = TINY_IMAGENET_URL) -> Path:
    """Return the extracted Tiny ImageNet-200 root, downloading/extracting it if needed."""
    root = data_dir / TINY_IMAGENET_DIR
    if (root / COMPLETE_MARKER).is_file():
        return root
    archive = data_dir / "tiny-imagenet-200.zip"
    if root.is_dir() and not archive.is_file():  # extracted by the user (or another tool), no archive beside it
        try:
            val_annotations(root)
        except DataError as exc:
            raise DataError(f"{root} exists but is not a usable Tiny ImageNet-200 tree: {exc}. Fix it, or delete it "
                            "and put the official tiny-imagenet-200.zip in its place "
                            "(densebench data --archive FILE)") from None
        return root
    if not archive.is_file():
        if not download_ok:
            raise DataError(f"Tiny ImageNet-200 is not in {data_dir} (no {TINY_IMAGENET_DIR}/ and no "
                            "tiny-imagenet-200.zip) and downloading is off")
        download(url, archive, md5)
    try:
        got = md5_of(archive)
    except OSError as exc:  # unreadable (permissions, I/O error): say which file and what to do
        raise DataError(f"{archive} is not a readable file ({exc.strerror or exc}); fix its permissions or "
                        "delete it and download it again") from None
    if got != md5:
        raise DataError(f"{archive} has MD5 {got}, expected {md5}: the file is corrupt, truncated or not "
                        "the official archive; delete it and download it again")
    return extract_tiny_imagenet(archive, root)


# ---------------------------------------------------------------- image loading


def _transform(image_size: int) -> Any:
    import torch  # heavy, optional
    from torchvision.transforms import v2  # heavy, optional

    return v2.Compose([
        v2.ToImage(),
        v2.Resize(image_size, antialias=True),
        v2.CenterCrop(image_size),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])


def _pick(n_total: int, n: int, seed: int) -> list[int]:
    """n distinct indices of range(n_total) in a seeded random order, so any prefix is a fair sample
    (the parity set is a prefix, the calibration set the part after it)."""
    import torch  # heavy, optional

    order = torch.randperm(n_total, generator=torch.Generator().manual_seed(seed))
    return order[: min(n, n_total)].tolist()


def load_images(paths: Sequence[Path], image_size: int) -> Any:
    import torch  # heavy, optional
    transform = _transform(image_size)
    tensors = []
    for path in paths:
        try:
            with Image.open(path) as img:
                tensors.append(transform(img.convert("RGB")))
        except (UnidentifiedImageError, OSError) as exc:
            raise DataError(f"{path} is not a readable image ({type(exc).__name__}: {exc}); remove it or "
                            "fix the dataset") from None
    return torch.stack(tensors)


def synthetic(n: int, image_size: int, seed: int) -> Any:
    """Deterministic pseudo-images: smooth random colour fields plus fine noise, normalised."""
    import torch  # heavy, optional
    import torch.nn.functional as F  # heavy, optional

    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 8, 8, generator=g)
    smooth = F.interpolate(coarse, size=(image_size, image_size), mode="bilinear", align_corners=False)
    pixels = (0.8 * smooth + 0.2 * torch.rand(n, 3, image_size, image_size, generator=g)).clamp(0, 1)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (pixels - mean) / std


def _tiny(settings_data_dir: Path, n: int, image_size: int, requested: str, download_ok: bool,
          seed: int) -> EvalData:
    import torch  # heavy, optional

    root = prepare_tiny_imagenet(settings_data_dir, download_ok=download_ok)
    pairs = val_annotations(root)
    index = {wnid: i for i, wnid in enumerate(imagenet_synsets())}
    chosen = [pairs[i] for i in _pick(len(pairs), n, seed)]
    unknown = sorted({w for _, w in chosen if w not in index})
    if unknown:
        raise DataError(f"{root}: classes {unknown[:5]} are not ImageNet-1k synsets")
    images = load_images([p for p, _ in chosen], image_size)
    labels = torch.tensor([index[w] for _, w in chosen])
    info = DatasetInfo(requested, "tiny-imagenet", str(root), "val", len(pairs), len(chosen), "imagenet-1k")
    return EvalData(images, labels, info)


def image_extensions() -> tuple[str, ...]:
    """File name endings of every image format this Pillow can open (lower case, with the dot)."""
    Image.init()
    return tuple(sorted(ext.lower() for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN))


def _hidden(name: str) -> bool:
    """Dot-files and dot-folders: '.ipynb_checkpoints', '.DS_Store', macOS '._x.jpg' resource forks."""
    return name.startswith(".")


def folder_samples(root: Path) -> tuple[list[str], list[tuple[Path, int]]]:
    """(class names, [(image path, class index)]) of an ImageFolder tree ``ROOT/<class>/**/<image>``.

    Like torchvision's ImageFolder, but hidden folders and files are not classes or images, any file
    Pillow can open by its ending is an image, and files elsewhere (a README at the root, a .txt beside
    the images) are ignored. Raises DataError naming what is wrong and the layout expected."""
    common = [e for e in (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".webp") if e in image_extensions()]
    layout = (f"expected {root}/<class>/<image>, images in a format Pillow opens ({', '.join(common)}, ...); "
              "hidden folders and files are ignored")
    try:
        classes = sorted(e.name for e in os.scandir(root) if e.is_dir() and not _hidden(e.name))
    except OSError as exc:
        raise DataError(f"--densebench-dataset {root}: cannot list it ({exc.strerror or exc}); {layout}") from None
    endings = image_extensions()
    samples: list[tuple[Path, int]] = []
    for index, name in enumerate(classes):
        for folder, dirs, files in os.walk(root / name, followlinks=True):
            dirs[:] = sorted(d for d in dirs if not _hidden(d))
            samples += [(Path(folder) / f, index) for f in sorted(files)
                        if not _hidden(f) and f.lower().endswith(endings)]
    if not classes or not samples:
        found = "no class folders" if not classes else f"no images in its {len(classes)} class folder(s)"
        raise DataError(f"--densebench-dataset {root} holds {found}; {layout}")
    return classes, samples


def _folder(path: Path, n: int, image_size: int, requested: str, seed: int) -> EvalData:
    import torch  # heavy, optional

    classes, samples = folder_samples(path)
    chosen = [samples[i] for i in _pick(len(samples), n, seed)]
    images = load_images([p for p, _ in chosen], image_size)
    index = {wnid: i for i, wnid in enumerate(imagenet_synsets())}
    labels = None
    label_space = "none"
    extra: dict[str, Any] = {"classes": len(classes)}
    others = [c for c in classes if c not in index]
    if not others:  # folders named by ImageNet synsets: real labels
        labels = torch.tensor([index[classes[c]] for _, c in chosen])
        label_space = "imagenet-1k"
    elif len(others) < len(classes):  # some synsets: say which folders are not, so the fix is clear
        extra["label_reason"] = (f"no ImageNet-1k labels: class folder(s) {_quoted(others)} of {path} are not "
                                 "ImageNet synsets (like n01443537)")
    info = DatasetInfo(requested, "folder", str(path), None, len(samples), len(chosen), label_space, extra=extra)
    return EvalData(images, labels, info)


def _quoted(names: list[str], limit: int = 5) -> str:
    return ", ".join(repr(n) for n in names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


MIN_EVAL_IMAGES = 2  # parity's logit error divides by the spread between images: one image has none


def _enough(data: EvalData) -> EvalData:
    """``data``, once it has at least two different images (raises DataError naming the dataset otherwise)."""
    images = data.images
    if len(images) < MIN_EVAL_IMAGES or bool((images == images[:1]).all()):
        where = data.info.path or data.info.source
        raise DataError(f"{where} gives {len(images)} image(s), {'all alike' if len(images) > 1 else 'one'}: parity "
                        f"needs at least {MIN_EVAL_IMAGES} different images (its logit error is measured against the "
                        "spread between images); add images or use another dataset")
    return data


def load(dataset: str, data_dir: Path, n: int, image_size: int, seed: int = 0,
         offline: bool = False) -> EvalData:
    """Load ``n`` evaluation images for the requested dataset, with auto fallback recorded.

    Raises DataError when the dataset cannot be used or gives fewer than two different images."""
    return _enough(_load(dataset, data_dir, n, image_size, seed, offline))


def _load(dataset: str, data_dir: Path, n: int, image_size: int, seed: int, offline: bool) -> EvalData:
    if dataset == "synthetic":
        return EvalData(synthetic(n, image_size, seed), None,
                        DatasetInfo("synthetic", "synthetic", None, None, n, n, "none", extra={"seed": seed}))
    if dataset == "tiny-imagenet":
        return _tiny(data_dir, n, image_size, dataset, download_ok=not offline, seed=seed)
    if dataset == "auto":
        present = (data_dir / TINY_IMAGENET_DIR).is_dir() or (data_dir / "tiny-imagenet-200.zip").is_file()
        reason = None
        if not present:
            reason = ("offline mode (--densebench-offline)" if offline else reachable(TINY_IMAGENET_URL))
        if reason is None:
            try:
                return _tiny(data_dir, n, image_size, "auto", download_ok=not offline, seed=seed)
            except DataError as exc:
                reason = str(exc)
        data = _load("synthetic", data_dir, n, image_size, seed, offline)
        data.info.requested = "auto"
        data.info.fallback_reason = f"Tiny ImageNet-200 unavailable: {reason}"
        return data
    return _folder(Path(dataset).expanduser(), n, image_size, dataset, seed)
