"""The challenge's digits, heard offline: PocketSphinx restricted to the words zero to nine.

The decoder searches a JSGF grammar that allows only a run of digit words ("oh" counts as
zero), so it cannot hear anything else: what it returns is the digit sequence that best fits
the sound. Silence or noise gives nothing or a short, wrong sequence; a check compares the
result with the challenge's digits (workers.liveness). The acoustic model and dictionary ship
inside the pocketsphinx wheel; no language model is loaded.

The decoder loads once per process (decoder(), ~0.1 s, ~30 MB) and decodes ~15 s of speech
in well under a second on one CPU core.
"""

from __future__ import annotations

import numpy as np

__all__ = ["SAMPLE_RATE", "WORDS", "decoder", "hear_digits"]

SAMPLE_RATE = 16_000  # what the acoustic model was trained on: 16 kHz, 16-bit, mono
WORDS = {
    "zero": "0",
    "oh": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
}
_GRAMMAR = "#JSGF V1.0;\ngrammar digits;\npublic <digits> = ( " + " | ".join(WORDS) + " )+ ;\n"
_decoders: list = []


def decoder():  # -> pocketsphinx.Decoder
    """This process's digits-only decoder, made on first use."""
    if not _decoders:
        from pocketsphinx import Decoder

        # a low word-insertion penalty and a likelier silence keep noise between the digits
        # from being heard as extra digits; dither keeps digital silence from upsetting the
        # cepstral normalisation (measured on eSpeak NG speech with added room noise)
        dec = Decoder(lm=None, jsgf=None, loglevel="FATAL", wip=1e-4, silprob=0.5, dither=True)
        dec.add_jsgf_string("digits", _GRAMMAR)
        dec.activate_search("digits")
        _decoders.append(dec)
    return _decoders[0]


def hear_digits(samples: np.ndarray) -> str:
    """The digits heard in `samples` (int16 mono at SAMPLE_RATE) as a string of 0-9, empty
    when nothing was recognised."""
    dec = decoder()
    dec.start_utt()
    dec.process_raw(np.ascontiguousarray(samples, dtype=np.int16).tobytes(), full_utt=True)
    dec.end_utt()
    hyp = dec.hyp()
    if hyp is None:
        return ""
    return "".join(WORDS.get(word, "") for word in hyp.hypstr.split())
