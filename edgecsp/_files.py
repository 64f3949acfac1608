"""Small file helpers shared by every layer (standard library only, Python 3.6)."""
import hashlib


def file_sha256(path):
    # type: (str) -> str
    """Hex sha256 of a file, read in 1 MiB blocks (engines and ONNX files can be large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
