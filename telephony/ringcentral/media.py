"""Call recordings -> 8 kHz mu-law for the local recogniser (pure functions, no I/O).

RingCentral serves recordings as WAV or MP3. WAV (PCM16 or G.711 mu-law, any rate,
mono or stereo) is read here; anything else is decoded with PyAV (installed with
faster-whisper). Stereo is mixed down: the recogniser gets one channel.
"""

from __future__ import annotations

import io
import struct
from typing import Any

import numpy as np

from telephony.audio import pcm16_to_ulaw, pcm16_to_ulaw8k, ulaw_to_pcm16

WAV_PCM = 1
WAV_MULAW = 7
WAV_EXTENSIBLE = 0xFFFE


class UnsupportedRecording(ValueError):
    """Audio we cannot decode."""


def wav_ulaw(ulaw: bytes, *, rate: int = 8000) -> bytes:
    """Wrap raw mu-law in a WAV container (format 7), as a recorder would store it."""
    header = b"RIFF" + struct.pack("<I", 36 + len(ulaw)) + b"WAVE"
    header += b"fmt " + struct.pack("<IHHIIHH", 16, WAV_MULAW, 1, rate, rate, 1, 8)
    return header + b"data" + struct.pack("<I", len(ulaw)) + ulaw


def _mono_pcm16(pcm: bytes, channels: int) -> bytes:
    if channels == 1:
        return pcm
    samples = np.frombuffer(pcm[: len(pcm) // (2 * channels) * 2 * channels], dtype="<i2")
    mixed = samples.reshape(-1, channels).astype(np.int32).mean(axis=1)
    out: bytes = np.clip(mixed, -32768, 32767).astype("<i2").tobytes()
    return out


def wav_to_ulaw8k(data: bytes) -> bytes:
    """A WAV file (PCM16 or mu-law) -> mono 8 kHz mu-law."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise UnsupportedRecording("not a WAV file")
    fmt: tuple[int, int, int, int] | None = None
    offset = 12
    while offset + 8 <= len(data):
        chunk, size = data[offset : offset + 4], struct.unpack("<I", data[offset + 4 : offset + 8])[0]
        body = data[offset + 8 : offset + 8 + size]
        if chunk == b"fmt ":
            tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", body[:16])
            if tag == WAV_EXTENSIBLE and len(body) >= 26:
                tag = struct.unpack("<H", body[24:26])[0]
            fmt = (tag, channels, rate, bits)
        elif chunk == b"data":
            if fmt is None:
                raise UnsupportedRecording("WAV data before its fmt chunk")
            tag, channels, rate, bits = fmt
            if tag == WAV_MULAW and bits == 8:
                pcm = ulaw_to_pcm16(body)
            elif tag == WAV_PCM and bits == 16:
                pcm = body[: len(body) // 2 * 2]
            else:
                raise UnsupportedRecording(f"WAV format {tag} with {bits}-bit samples")
            mono = _mono_pcm16(pcm, max(channels, 1))
            return pcm16_to_ulaw8k(mono, rate) if rate != 8000 else pcm16_to_ulaw(mono)
        offset += 8 + size + (size & 1)
    raise UnsupportedRecording("WAV without a data chunk")


def _decode_with_av(data: bytes) -> bytes:
    import av  # faster-whisper's decoder; imported only for non-WAV recordings

    pcm = bytearray()
    container: Any = av.open(io.BytesIO(data))
    with container:
        resampler: Any = av.AudioResampler(format="s16", layout="mono", rate=8000)
        for frame in container.decode(audio=0):
            for out in resampler.resample(frame):
                pcm += out.to_ndarray().astype("<i2").tobytes()
        for out in resampler.resample(None):
            pcm += out.to_ndarray().astype("<i2").tobytes()
    return pcm16_to_ulaw(bytes(pcm))


def recording_to_ulaw8k(data: bytes, content_type: str) -> bytes:
    """Any recording RingCentral serves -> mono 8 kHz mu-law."""
    if data[:4] == b"RIFF" or content_type in ("audio/wav", "audio/x-wav", "audio/wave"):
        return wav_to_ulaw8k(data)
    try:
        return _decode_with_av(data)
    except Exception as exc:  # PyAV raises its own FFmpeg error family
        raise UnsupportedRecording(f"cannot decode {content_type} audio: {type(exc).__name__}") from exc
