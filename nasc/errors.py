"""One error root for nasc; each subclass has its own CLI exit code.

Every message says what was wrong, where (file, key path, node, host:port) and what to do.
Exit codes are unique per class and stay clear of click's usage error (2); an unexpected exception
(a bug) exits with UNEXPECTED_EXIT, an interrupt with INTERRUPTED_EXIT.
"""

from __future__ import annotations

UNEXPECTED_EXIT = 70  # EX_SOFTWARE: an exception that is not a NascError
INTERRUPTED_EXIT = 130  # Ctrl-C


class NascError(Exception):
    """Root of every error nasc reports to a user."""

    exit_code = 1


class ConfigError(NascError):
    """build.toml or a command-line value is wrong (not 2: click's own usage errors exit 2)."""

    exit_code = 15


class InputError(NascError):
    """A file given by the user is missing or is not what it should be."""

    exit_code = 3


class UnknownDevice(NascError):
    """A device name that is neither in build.toml nor a built-in profile."""

    exit_code = 4


class UnsupportedOperator(NascError):
    """The ONNX importer cannot take an operator of the model."""

    exit_code = 5


class CompileError(NascError):
    """TVM failed to build or tune the model."""

    exit_code = 6


class ParityError(NascError):
    """The compiled artifact disagrees with onnxruntime beyond tolerance."""

    exit_code = 7


class DeviceUnreachable(NascError):
    """An RPC server or tracker could not be reached or kept dropping the session."""

    exit_code = 8


class ToolMissing(NascError):
    """An external tool (cross compiler, debootstrap, NDK...) is not installed."""

    exit_code = 9


class MeasurementError(NascError):
    """A measurement could not be made or stayed too noisy to use."""

    exit_code = 10


class BundleCorrupt(NascError):
    """A bundle fails its schema or hash checks, or holds an unsafe member."""

    exit_code = 11


class TransferError(NascError):
    """A serial transfer failed (port missing or busy, peer silent, too many retries)."""

    exit_code = 12


class SearchError(NascError):
    """The architecture search cannot run or cannot meet its constraints."""

    exit_code = 13


class EmulationError(NascError):
    """The emulated device's root file system could not be built or run (not root, debootstrap failed...)."""

    exit_code = 14
