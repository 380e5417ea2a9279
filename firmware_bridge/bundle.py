"""Bundle files: a deterministic tar.gz, its verification, and safe unpacking. Stdlib only.

Deterministic: members sorted by name, regular files only, mode 0644, mtime/uid/gid fixed,
no owner names, USTAR headers, gzip header without name or time. Same inputs, same bytes.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import tarfile
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from nasc.errors import BundleCorrupt, InputError
from nasc.fsutil import atomic_output
from nasc.fsutil import sha256_file as file_sha256

from .manifest import MANIFEST_NAME, BundleManifest, check_member_path

FIXED_MTIME = 1_577_836_800  # 2020-01-01T00:00:00Z: every member's mtime
CHANGED = "the file changed after packaging; package again or get an intact copy"
MAX_MANIFEST_BYTES = 16 * 1024 * 1024
_COPY_BLOCK = 1024 * 1024
DAMAGE = (tarfile.TarError, OSError, EOFError, zlib.error)  # what a damaged tar.gz raises while reading


@dataclass(frozen=True)
class Member:
    """A file to put in a bundle: its path inside, and bytes or a source file."""

    path: str
    data: bytes | None = None
    source: Path | None = None

    def size(self) -> int:
        """Size in bytes."""
        return len(self.data) if self.data is not None else os.path.getsize(self.source)  # type: ignore[arg-type]

    def open(self) -> io.BufferedIOBase:
        """A binary reader of the content."""
        if self.data is not None:
            return io.BytesIO(self.data)
        return open(self.source, "rb")  # type: ignore[arg-type]


def sha256_of(reader: io.BufferedIOBase | io.BytesIO) -> tuple[str, int]:
    """(sha256 hex, size) of everything `reader` yields."""
    digest = hashlib.sha256()
    size = 0
    while block := reader.read(_COPY_BLOCK):
        digest.update(block)
        size += len(block)
    return digest.hexdigest(), size


def write_bundle(members: list[Member], output: Path) -> None:
    """Write `members` as a deterministic tar.gz at `output`, atomically (temp file + rename)."""
    names = [m.path for m in members]
    if len(set(names)) != len(names):
        raise ValueError("duplicate member names")
    with (
        atomic_output(output) as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.USTAR_FORMAT) as tar,
    ):
        for member in sorted(members, key=lambda m: m.path):
            info = tarfile.TarInfo(member.path)
            info.size = member.size()
            info.mtime = FIXED_MTIME
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.type = tarfile.REGTYPE
            with member.open() as reader:
                tar.addfile(info, reader)


def _open_tar(bundle: Path) -> tarfile.TarFile:
    if not bundle.is_file():
        raise InputError(f"{bundle}: no such bundle file; make one with nasc package --from DIR -o {bundle.name}")
    try:
        return tarfile.open(bundle, mode="r:gz")
    except DAMAGE as exc:
        raise BundleCorrupt(f"{bundle}: not a readable tar.gz ({exc}); damaged, or not a nasc bundle") from None


def member_problem(info: tarfile.TarInfo, max_member_bytes: int) -> str | None:
    """Why a tar member must not be unpacked, or None. Only regular files and directories pass."""
    name = info.name.rstrip("/") if info.isdir() else info.name
    why = check_member_path(name)
    if why:
        return f"unsafe path ({why})"
    if info.issym() or info.islnk():
        target = PurePosixPath(info.linkname)
        resolved = PurePosixPath(name).parent / target
        escapes = target.is_absolute() or ".." in PurePosixPath(os.path.normpath(str(resolved))).parts
        kind = "symbolic" if info.issym() else "hard"
        return f"{kind} link to {info.linkname!r}" + (" (points outside the bundle)" if escapes else "")
    if info.isdev() or info.isfifo():
        return "device or FIFO special file"
    if not (info.isfile() or info.isdir()):
        return f"unsupported member type {info.type!r}"
    if info.size > max_member_bytes:
        return f"oversized member ({info.size} bytes, limit {max_member_bytes})"
    return None


@dataclass(frozen=True)
class VerifyReport:
    """Outcome of verify_bundle: the manifest and what was checked."""

    bundle: str
    manifest: BundleManifest
    files_checked: int
    bytes_checked: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"bundle": self.bundle, "manifest": self.manifest.to_dict(), "files_checked": self.files_checked,
                "bytes_checked": self.bytes_checked}


def verify_bundle(bundle: Path, max_member_bytes: int = 1 << 30) -> VerifyReport:
    """Check the manifest schema, every member's safety, size and sha256; raise BundleCorrupt naming each bad file."""
    problems: list[str] = []
    hashes: dict[str, tuple[str, int]] = {}
    manifest_raw: bytes | None = None
    with _open_tar(bundle) as tar:
        try:
            for info in tar:
                why = member_problem(info, max_member_bytes)
                if why:
                    problems.append(f"{info.name}: {why}")
                    continue
                if info.isdir():
                    continue
                if info.name in hashes or (info.name == MANIFEST_NAME and manifest_raw is not None):
                    problems.append(f"{info.name}: appears more than once in the tar")
                    continue
                reader = tar.extractfile(info)
                assert reader is not None
                if info.name != MANIFEST_NAME:
                    hashes[info.name] = sha256_of(reader)
                elif info.size > MAX_MANIFEST_BYTES:
                    problems.append(f"{MANIFEST_NAME}: {info.size} bytes, larger than any real manifest")
                else:
                    manifest_raw = reader.read()
            # The tar ends at its end-of-archive blocks; read the gzip stream to its end too, so that a
            # bundle cut short after them (its CRC and size trailer gone) is not taken as whole.
            while tar.fileobj is not None and tar.fileobj.read(1 << 20):
                pass
        except DAMAGE as exc:
            raise BundleCorrupt(f"{bundle}: the tar.gz stream is damaged ({exc}); copy the bundle again") from None
    if manifest_raw is None:
        raise BundleCorrupt(f"{bundle}: no {MANIFEST_NAME}; this is not a nasc bundle" + _more(problems))
    manifest = BundleManifest.from_json(manifest_raw, f"{bundle}:{MANIFEST_NAME}")
    for entry in manifest.files:
        if entry.path not in hashes:
            problems.append(f"{entry.path}: listed in the manifest but missing from the bundle")
            continue
        digest, size = hashes[entry.path]
        if size != entry.size_bytes:
            problems.append(f"{entry.path}: {size} bytes, the manifest says {entry.size_bytes} ({CHANGED})")
        elif digest != entry.sha256:
            problems.append(f"{entry.path}: sha256 {digest[:12]}, the manifest says {entry.sha256[:12]} ({CHANGED})")
    listed = {e.path for e in manifest.files}
    problems += [f"{p}: in the bundle but not listed in the manifest" for p in sorted(set(hashes) - listed)]
    if problems:
        raise BundleCorrupt(f"{bundle}: {len(problems)} problem(s):\n  " + "\n  ".join(problems))
    return VerifyReport(str(bundle), manifest, len(hashes), sum(size for _, size in hashes.values()))


def _more(problems: list[str]) -> str:
    return ("; also: " + "; ".join(problems)) if problems else ""


def extract_bundle(bundle: Path, dest: Path, max_member_bytes: int = 1 << 30) -> VerifyReport:
    """Verify `bundle`, then unpack it into the new folder `dest` (atomically: a temp folder renamed into place).

    Refuses absolute paths, '..', links, device files and members over `max_member_bytes`.
    """
    report = verify_bundle(bundle, max_member_bytes)
    if dest.exists():
        raise InputError(f"{dest}: already exists; give a new folder to unpack into")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        with _open_tar(bundle) as tar:
            for info in tar:
                why = member_problem(info, max_member_bytes)
                if why:  # verify passed, so the file changed under us
                    raise BundleCorrupt(f"{bundle}: {info.name}: {why}")
                target = tmp.joinpath(*PurePosixPath(info.name).parts)
                if info.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                reader = tar.extractfile(info)
                assert reader is not None
                with open(target, "xb") as out:
                    shutil.copyfileobj(reader, out, _COPY_BLOCK)
                target.chmod(0o755 if info.mode & 0o111 else 0o644)
        for entry in report.manifest.files:  # the bytes written are the bytes verified
            if file_sha256(tmp / entry.path) != entry.sha256:
                raise BundleCorrupt(f"{bundle}: {entry.path}: changed while unpacking; unpack again")
        os.replace(tmp, dest)
    except DAMAGE as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError) and not isinstance(exc, (tarfile.TarError, EOFError, zlib.error)):
            raise InputError(f"{dest}: cannot write the unpacked files: {exc}") from None
        raise BundleCorrupt(f"{bundle}: the tar.gz stream is damaged ({exc})") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return report
