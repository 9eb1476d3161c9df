"""G.711 must match the ITU reference bit for bit: carriers and Twilio decode with the same tables."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from parley.audio.codecs import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode

ALL_SAMPLES = np.arange(-32768, 32768, dtype=np.int16)
ALL_CODES = bytes(range(256))
pcm_arrays = arrays(np.int16, st.integers(0, 400))


def pcm(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.int16)


@pytest.mark.parametrize(
    ("sample", "ulaw", "alaw"),
    [
        (0, 0xFF, 0xD5),  # silence
        (-1, 0x7F, 0x55),  # G.191 one's complement: -1 is "negative zero", not the first negative step
        (1000, 0xCE, 0xFA),
        (-1000, 0x4E, 0x7A),
        (32767, 0x80, 0xAA),  # clipped to the largest positive code
        (-32768, 0x00, 0x2A),
    ],
)
def test_known_code_points(sample: int, ulaw: int, alaw: int) -> None:
    assert ulaw_encode(pcm(sample)) == bytes([ulaw])
    assert alaw_encode(pcm(sample)) == bytes([alaw])


@pytest.mark.parametrize(
    ("code", "value"), [(0xFF, 0), (0x7F, 0), (0x80, 32124), (0x00, -32124), (0xCE, 988), (0x4E, -988)]
)
def test_known_ulaw_decoded_values(code: int, value: int) -> None:
    assert ulaw_decode(bytes([code]))[0] == value


@pytest.mark.parametrize(
    ("code", "value"), [(0xD5, 8), (0x55, -8), (0xAA, 32256), (0x2A, -32256), (0xFA, 1008), (0x7A, -1008)]
)
def test_known_alaw_decoded_values(code: int, value: int) -> None:
    assert alaw_decode(bytes([code]))[0] == value


def test_every_code_survives_decode_then_encode() -> None:
    assert alaw_encode(alaw_decode(ALL_CODES)) == ALL_CODES
    expected = bytearray(ALL_CODES)
    expected[0x7F] = 0xFF  # μ-law has two zeros; the negative one comes back as the positive one
    assert ulaw_encode(ulaw_decode(ALL_CODES)) == bytes(expected)


@pytest.mark.parametrize(("encode", "decode"), [(ulaw_encode, ulaw_decode), (alaw_encode, alaw_decode)])
def test_quantizer_is_monotonic_and_mirror_symmetric(
    encode: Callable[[np.ndarray], bytes], decode: Callable[[bytes], np.ndarray]
) -> None:
    out = decode(encode(ALL_SAMPLES)).astype(np.int64)
    assert np.all(np.diff(out) >= 0), "a louder input must never decode quieter"
    # One's complement mirror: x and -x-1 land on opposite codes of the same magnitude.
    mirrored = decode(encode((-ALL_SAMPLES.astype(np.int32) - 1).astype(np.int16))).astype(np.int64)
    assert np.array_equal(mirrored, -out)


@given(pcm_arrays)
def test_ulaw_round_trip_error_is_within_half_a_step(samples: np.ndarray) -> None:
    encoded = ulaw_encode(samples)
    assert len(encoded) == samples.size
    x = samples.astype(np.int64)
    err = np.abs(ulaw_decode(encoded).astype(np.int64) - x)
    clipped = np.abs(x) > 32124
    assert np.all(err[~clipped] <= (np.abs(x[~clipped]) + 132) / 32)
    assert np.all(err[clipped] <= 32768 - 32124)


@given(pcm_arrays)
def test_alaw_round_trip_error_is_within_half_a_step(samples: np.ndarray) -> None:
    encoded = alaw_encode(samples)
    assert len(encoded) == samples.size
    x = samples.astype(np.int64)
    err = np.abs(alaw_decode(encoded).astype(np.int64) - x)
    assert np.all(err <= np.maximum(16, np.abs(x) / 32))


@given(st.binary(max_size=400))
def test_decoders_accept_any_bytes_like(data: bytes) -> None:
    for decode in (ulaw_decode, alaw_decode):
        a, b, c = decode(data), decode(bytearray(data)), decode(memoryview(data))
        assert a.dtype == np.int16 and a.size == len(data)
        assert np.array_equal(a, b) and np.array_equal(a, c)


def test_encoders_reject_non_pcm16() -> None:
    with pytest.raises(ValueError, match="int16"):
        ulaw_encode(np.zeros(4, dtype=np.float32))
    with pytest.raises(ValueError, match="int16"):
        alaw_encode(np.zeros((2, 2), dtype=np.int16))
