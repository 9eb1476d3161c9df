"""A synthetic caller for benchmarks: Piper speaks whole sentences, and a mid-sentence pause is cut in
at a word boundary of the *same* utterance, so the words before it keep their unfinished intonation.

(Synthesizing the two halves separately would end the first half with a sentence-final fall, which no
real speaker produces mid-sentence, and would make the turn detector's job unrealistically easy or hard.)
"""

from __future__ import annotations

import numpy as np

from parley.audio.frame import AudioFrame
from parley.onnx import inference_session
from parley.providers.assets import piper_voice_files

LEAD_IN_S = 0.2
TAIL_S = 0.2


class CallerVoice:
    """Piper with phoneme alignments (needs the ``onnx`` package, part of the gpl extra)."""

    def __init__(self, length_scale: float = 1.05, *, varied: bool = True) -> None:
        """``varied=False`` turns Piper's sampling noise off: the same text gives the same audio every
        time, for tests that must not depend on a lucky take."""
        import onnx
        from piper import PiperVoice
        from piper.config import PiperConfig, SynthesisConfig
        from piper.patch_voice_with_alignment import add_alignment_output

        model_path, config_path = piper_voice_files()
        model = onnx.load(str(model_path))
        add_alignment_output(model)
        import json

        config = PiperConfig.from_dict(json.loads(config_path.read_text(encoding="utf-8")))
        self._voice = PiperVoice(config=config, session=inference_session(model.SerializeToString(), 2))
        if varied:
            self._synthesis = SynthesisConfig(length_scale=length_scale)
        else:
            self._synthesis = SynthesisConfig(length_scale=length_scale, noise_scale=0.0, noise_w_scale=0.0)
        self.sample_rate: int = config.sample_rate

    def say(self, text: str, pause_after_words: int | None = None, pause_s: float = 0.0) -> AudioFrame:
        """``text`` as one utterance; with ``pause_after_words``, ``pause_s`` of silence after that word."""
        chunks = list(self._voice.synthesize(text, self._synthesis, include_alignments=True))
        pcm = np.concatenate([c.audio_int16_array for c in chunks]).astype(np.int16)
        if pause_after_words is not None:
            cut = self._word_end(chunks[0], pause_after_words)
            pcm = np.concatenate([pcm[:cut], np.zeros(int(pause_s * self.sample_rate), np.int16), pcm[cut:]])
        lead = np.zeros(int(LEAD_IN_S * self.sample_rate), np.int16)
        tail = np.zeros(int(TAIL_S * self.sample_rate), np.int16)
        return AudioFrame(np.concatenate([lead, pcm, tail]), self.sample_rate)

    @staticmethod
    def _word_end(chunk: object, words: int) -> int:
        """Sample index where the gap after the ``words``-th word starts."""
        alignments = getattr(chunk, "phoneme_alignments", None)
        if not alignments:
            raise RuntimeError("Piper returned no phoneme alignments (is the onnx package installed?)")
        gaps, position = 0, 0
        for alignment in alignments:
            if alignment.phoneme == " ":
                gaps += 1
                if gaps == words:
                    return position
            position += int(alignment.num_samples)
        raise ValueError(f"the sentence has fewer than {words + 1} words")
