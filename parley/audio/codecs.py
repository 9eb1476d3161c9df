"""G.711 μ-law and A-law, bit-exact with the ITU-T G.191 reference implementation.

Encoding goes through a 64 Ki-entry table indexed by the raw int16 bits and decoding through a
256-entry table, so a 20 ms telephony frame costs two numpy takes. The tables are computed once from
the G.191 arithmetic (negative samples use one's complement, so ``x`` and ``-x - 1`` mirror each
other), which is what Python's removed ``audioop`` did not do exactly.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from parley.audio.frame import PCM16

_ALL_INT16 = np.arange(-32768, 32768, dtype=np.int32)  # index = int16 bits viewed as uint16, after roll
_ALL_CODES = np.arange(256, dtype=np.int32)


def _ulaw_compress(x: npt.NDArray[np.int32]) -> npt.NDArray[np.uint8]:
    magnitude = np.where(x < 0, ~x, x) >> 2  # 14-bit magnitude
    biased = np.minimum(magnitude + 33, 0x1FFF)
    segment = np.zeros_like(biased)
    for bound in (64, 128, 256, 512, 1024, 2048, 4096):  # segment = bit length of biased >> 6, plus 1
        segment += biased >= bound
    segment += 1
    high = 8 - segment
    low = 0xF - ((biased >> segment) & 0xF)
    code = (high << 4) | low
    out: npt.NDArray[np.uint8] = np.where(x >= 0, code | 0x80, code).astype(np.uint8)
    return out


def _ulaw_expand(code: npt.NDArray[np.int32]) -> npt.NDArray[np.int16]:
    sign = np.where(code < 0x80, -1, 1)
    inverted = ~code
    exponent = (inverted >> 4) & 0x7
    mantissa = inverted & 0xF
    step = 4 << (exponent + 1)
    out: PCM16 = (sign * ((0x80 << exponent) + step * mantissa + step // 2 - 4 * 33)).astype(np.int16)
    return out


def _alaw_compress(x: npt.NDArray[np.int32]) -> npt.NDArray[np.uint8]:
    ix = np.where(x < 0, ~x, x) >> 4  # 12-bit magnitude, 0..2047
    exponent = np.zeros_like(ix)
    for bound in (32, 64, 128, 256, 512, 1024):
        exponent += ix >= bound
    segmented = np.where(
        ix > 15,
        ((ix >> np.maximum(exponent, 0)) - 16) + ((exponent + 1) << 4),
        ix,
    )
    code = np.where(x >= 0, segmented | 0x80, segmented)
    return (code ^ 0x55).astype(np.uint8)


def _alaw_expand(code: npt.NDArray[np.int32]) -> npt.NDArray[np.int16]:
    ix = (code ^ 0x55) & 0x7F
    exponent = ix >> 4
    mantissa = ix & 0xF
    mantissa = np.where(exponent > 0, mantissa + 16, mantissa)
    mantissa = (mantissa << 4) + 8
    mantissa = np.where(exponent > 1, mantissa << np.maximum(exponent - 1, 0), mantissa)
    return np.where(code > 127, mantissa, -mantissa).astype(np.int16)


# Encode tables are indexed by the uint16 view of the sample, so shift the -32768..32767 range to match.
_ULAW_ENCODE = np.roll(_ulaw_compress(_ALL_INT16), -32768)
_ALAW_ENCODE = np.roll(_alaw_compress(_ALL_INT16), -32768)
_ULAW_DECODE = _ulaw_expand(_ALL_CODES)
_ALAW_DECODE = _alaw_expand(_ALL_CODES)


def _check_pcm(pcm: PCM16) -> None:
    if pcm.dtype != np.int16 or pcm.ndim != 1:
        raise ValueError(f"expected 1-D int16 PCM, got {pcm.dtype} with shape {pcm.shape}")


def _codes(data: bytes | bytearray | memoryview) -> npt.NDArray[np.uint8]:
    return np.frombuffer(data, dtype=np.uint8)


def ulaw_encode(pcm: PCM16) -> bytes:
    """PCM16 -> one μ-law byte per sample (Twilio Media Streams' payload format)."""
    _check_pcm(pcm)
    return _ULAW_ENCODE[pcm.view(np.uint16)].tobytes()


def ulaw_decode(data: bytes | bytearray | memoryview) -> PCM16:
    return _ULAW_DECODE[_codes(data)]


def alaw_encode(pcm: PCM16) -> bytes:
    """PCM16 -> one A-law byte per sample."""
    _check_pcm(pcm)
    return _ALAW_ENCODE[pcm.view(np.uint16)].tobytes()


def alaw_decode(data: bytes | bytearray | memoryview) -> PCM16:
    return _ALAW_DECODE[_codes(data)]
