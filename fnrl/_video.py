"""Video files for ``python -m fnrl.render``: MP4 (H.264, by ffmpeg) and GIF (by Pillow).

A video is written beside its path under a hidden name and moved onto the path once complete,
so that a render that fails (a full disk, Ctrl-C) leaves no partial file and an earlier video
as it was. Every failure to write is one ``OSError`` whose message names the video's path and
the OS error, as ``[Errno 28] No space left on device``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import subprocess
import tempfile
import warnings
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np

# The OS errors a write can end with that ffmpeg reports by their text (a full disk, a file
# too large for the file system or RLIMIT_FSIZE, a quota, a disk error, a read-only mount).
_WRITE_ERRORS = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EIO, errno.EROFS, errno.EACCES)


def video_error(path: Path, reason: object) -> OSError:
    """One line for a video that cannot be written: its path and the first line of ``reason``
    (of an ``OSError``, its number and text without the file it names, maybe a hidden one)."""
    if isinstance(reason, OSError) and reason.errno is not None:
        reason = f"[Errno {reason.errno}] {reason.strerror}"
    text = str(reason).strip()
    return OSError(
        f"cannot write the video {path}: {text.splitlines()[0] if text else repr(reason)}"
    )


def can_write_mp4() -> bool:
    """Whether imageio-ffmpeg (the ``video`` extra), which brings ffmpeg, is installed."""
    try:
        import imageio_ffmpeg  # noqa: F401
    except ImportError:
        return False
    return True


@contextlib.contextmanager
def claimed(out: Path) -> Iterator[Path]:
    """Makes ``out``'s missing folders and an empty file beside it, runs the body with that
    file's path, and moves the file onto ``out`` when the body returns.

    If the body fails, the file and the folders made are removed and ``out`` is as it was. A
    device or a pipe (``out`` or the target of its link is no regular file) is written as it is.

    Raises:
        OSError: ``out`` cannot be written (:func:`video_error`), before the body runs or after.
    """
    made = [folder for folder in out.parents if not folder.exists()]  # deepest first

    def remove_made() -> None:
        for folder in made:
            with contextlib.suppress(OSError):
                folder.rmdir()

    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        target = out.resolve()  # a link is kept: its target gets the video
        if target.is_dir():
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR))
        special = target.exists() and not target.is_file()
        if target.exists() and not os.access(target, os.W_OK):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
        path = target if special else target.with_name(f".{target.name}.{os.getpid()}.partial")
        with open(path, "ab"):
            pass
    except OSError as e:
        remove_made()
        raise video_error(out, e) from e
    try:
        yield path
        if not special:
            try:
                os.replace(path, target)
            except OSError as e:
                raise video_error(out, e) from e
    except BaseException:
        if not special:
            with contextlib.suppress(OSError):
                path.unlink()
        remove_made()
        raise


class _Mp4Writer:
    """Pipes frames to ffmpeg, which encodes them as H.264 (yuv420p, CRF 25) in an MP4 file.

    ffmpeg writes the MP4's index as it ends, so a disk that fills then fails only its exit code,
    which imageio's ffmpeg writer never reads: this writer runs ffmpeg itself and checks it.
    ffmpeg runs in a session of its own so that a Ctrl-C in the terminal reaches fnrl, which
    stops it, rather than ffmpeg alone.
    """

    def __init__(self, path: Path, fps: float, name: Path) -> None:
        self._path, self._fps, self._name = path, fps, name
        self._ffmpeg: subprocess.Popen | None = None
        # ffmpeg's errors go to a file: a pipe nobody reads while frames are sent could fill up.
        # close() or abort() closes it.
        self._report = tempfile.TemporaryFile()  # noqa: SIM115

    def _start(self, height: int, width: int) -> subprocess.Popen:
        import imageio_ffmpeg

        # imageio-ffmpeg's command for these settings, with the format named: the file's
        # hidden name ends in ".partial".
        command = [
            imageio_ffmpeg.get_ffmpeg_exe(),
            "-y",
            "-loglevel",
            "error",
            *("-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}"),
            *("-r", str(Fraction(self._fps).limit_denominator()), "-i", "-", "-an"),
            *("-vcodec", "libx264", "-pix_fmt", "yuv420p", "-crf", "25", "-f", "mp4"),
            str(self._path),
        ]
        with warnings.catch_warnings():
            # Popen forks, which JAX warns about; the child execs ffmpeg at once and never runs
            # JAX code.
            warnings.filterwarnings("ignore", "os.fork", RuntimeWarning)
            return subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=self._report,
                start_new_session=True,
            )

    def write(self, frame: np.ndarray) -> None:
        if frame.shape[0] % 2 or frame.shape[1] % 2:  # yuv420p needs an even width and height
            pad = ((0, frame.shape[0] % 2), (0, frame.shape[1] % 2), (0, 0))
            frame = np.pad(frame, pad, mode="edge")
        if self._ffmpeg is None:
            self._ffmpeg = self._start(*frame.shape[:2])
        try:
            self._ffmpeg.stdin.write(np.ascontiguousarray(frame).tobytes())
        except OSError:  # ffmpeg has stopped: its report says why
            raise self._failure() from None

    def close(self) -> None:
        if self._ffmpeg is None:
            raise video_error(self._name, "no frames")
        with contextlib.suppress(OSError):  # ffmpeg has stopped: its exit code tells
            self._ffmpeg.stdin.close()
        if self._ffmpeg.wait() != 0:
            raise self._failure()
        self._report.close()

    def abort(self) -> None:
        if self._ffmpeg is not None:
            self._ffmpeg.kill()
            self._ffmpeg.wait()
        self._report.close()

    def _failure(self) -> OSError:
        """The error of an ffmpeg that stopped: the OS error it names, else its last line."""
        with contextlib.suppress(OSError):
            self._ffmpeg.stdin.close()
        code = self._ffmpeg.wait()
        self._report.seek(0)
        report = self._report.read().decode(errors="replace")
        self._report.close()
        # Popen restores SIGXFSZ's default in ffmpeg: a file over RLIMIT_FSIZE kills it.
        found = [n for n in _WRITE_ERRORS if os.strerror(n) in report]
        found += [errno.EFBIG] if code == -signal.SIGXFSZ else []
        if found:
            return video_error(self._name, OSError(found[0], os.strerror(found[0])))
        how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
        reason = f"ffmpeg stopped ({how})"
        lines = [line.strip() for line in report.splitlines() if line.strip()]
        return video_error(self._name, f"{reason}: {lines[-1]}" if lines else reason)


class _GifWriter:
    """Keeps the frames and writes them as one looping GIF when closed (Pillow's encoder,
    which merges identical consecutive frames into one longer frame)."""

    def __init__(self, path: Path, fps: float, name: Path) -> None:
        self._path, self._fps, self._name = path, fps, name
        self._frames: list = []

    def write(self, frame: np.ndarray) -> None:
        from PIL import Image

        self._frames.append(Image.fromarray(frame))

    def close(self) -> None:
        if not self._frames:
            raise video_error(self._name, "no frames")
        first, *rest = self._frames
        try:
            first.save(
                self._path,
                format="GIF",
                save_all=True,
                append_images=rest,
                duration=1000 / self._fps,
                loop=0,
            )
        except OSError as e:
            raise video_error(self._name, e) from e

    def abort(self) -> None:
        self._frames.clear()


@contextlib.contextmanager
def video_writer(path: Path, fps: float, name: Path) -> Iterator[Callable[[np.ndarray], None]]:
    """Runs the body with a function that writes ``[H, W, 3]`` uint8 frames to ``path``, an MP4
    or a GIF as ``name`` ends; finishes the file when the body returns.

    Args:
        path: the file to write (from :func:`claimed`).
        fps: frames per second.
        name: the video's path as the user gave it, for errors; its suffix picks the format.

    Raises:
        ValueError: ``name`` ends in neither ``.mp4`` nor ``.gif``.
        OSError: the file cannot be written (:func:`video_error`).
    """
    formats = {".mp4": _Mp4Writer, ".gif": _GifWriter}
    if name.suffix.lower() not in formats:
        raise ValueError(f"--out must end in .mp4 or .gif, got {name.name!r}")
    writer = formats[name.suffix.lower()](path, fps, name)

    def write(frame: np.ndarray) -> None:
        writer.write(np.asarray(frame, np.uint8))

    try:
        yield write
    except BaseException:
        writer.abort()
        raise
    writer.close()
