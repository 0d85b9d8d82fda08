"""Consent crypto per use, in microseconds: minting and verifying render tokens, and
unwrapping a cameo's data key and decrypting one reference frame (issue 8).

Real keys on a fresh data folder, as an API process (SigningKeyring) and a worker
(VerifyingKeyring, loaded from the public-keys file) use them. Each measure runs `--number`
times per repeat (timeit); the table gives the median and the best repeat per call. The
Redis revocation check (one EXISTS) is not included: it is a network round trip, not crypto.

    .venv/bin/python benchmarks/consent_tokens.py
    .venv/bin/python benchmarks/consent_tokens.py --number 2000 --repeat 5   # a quick run
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import timeit
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from consent.envelope import (
    decrypt,
    encrypt,
    load_kek,
    new_data_key,
    reference_aad,
    unwrap_key,
    wrap_key,
)
from consent.keyring import SigningKeyring, VerifyingKeyring
from consent.tokens import (
    mint_render_token,
    spec_hash,
    verify_render_token,
)
from settings import Settings

FRAME_BYTES = 24 * 1024  # about one JPEG face crop


def measure(name: str, func: Callable[[], object], number: int, repeat: int) -> tuple:
    func()  # warm up
    runs = timeit.repeat(func, number=number, repeat=repeat)
    per_call = [run / number * 1e6 for run in runs]
    return name, statistics.median(per_call), min(per_call)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=5_000, help="calls per repeat")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(_env_file=None, data_dir=Path(tmp))
        ring = SigningKeyring.load(settings)
        worker = VerifyingKeyring.load(settings)
        use = {
            "clip_id": "01JCLIPCLIPCLIPCLIPCLIPCLI",
            "cameo_id": "01JCAMEOCAMEOCAMEOCAMEOCAM",
            "epoch": 2,
            "grantee_id": "01JUSERUSERUSERUSERUSERUSE",
        }
        digest = spec_hash(
            clip_id=use["clip_id"],
            author_id=use["grantee_id"],
            prompt="a slow dolly shot through a neon market at night, rain on the lens",
            duration_s=5,
            moods=["dreamy"],
            parent_id=None,
            cameo_ids=[use["cameo_id"]],
        )
        token, _ = mint_render_token(ring, owner_id="01JOWNER", spec_hash=digest, ttl_s=3600, **use)
        kek = load_kek(settings)
        data_key = new_data_key()
        wrapped = wrap_key(kek, data_key, cameo_id=use["cameo_id"])
        aad = reference_aad(use["cameo_id"])
        blob = encrypt(data_key, os.urandom(FRAME_BYTES), aad=aad)
        raw_key = Ed25519PrivateKey.generate()
        raw_public = raw_key.public_key()
        raw_message = os.urandom(400)
        raw_signature = raw_key.sign(raw_message)

        rows = [
            measure(
                "mint render token (API)",
                lambda: mint_render_token(
                    ring, owner_id="01JOWNER", spec_hash=digest, ttl_s=3600, **use
                ),
                args.number,
                args.repeat,
            ),
            measure(
                "verify render token (worker, all claim checks)",
                lambda: verify_render_token(worker, token, spec_hash=digest, **use),
                args.number,
                args.repeat,
            ),
            measure(
                "  of which: bare Ed25519 verify of 400 bytes",
                lambda: raw_public.verify(raw_signature, raw_message),
                args.number,
                args.repeat,
            ),
            measure(
                "spec_hash of a draft",
                lambda: spec_hash(
                    clip_id=use["clip_id"],
                    author_id=use["grantee_id"],
                    prompt="a slow dolly shot",
                    duration_s=5,
                    moods=["dreamy"],
                    parent_id=None,
                    cameo_ids=[use["cameo_id"]],
                ),
                args.number,
                args.repeat,
            ),
            measure(
                "unwrap data key (AES-256-GCM)",
                lambda: unwrap_key(kek, wrapped, cameo_id=use["cameo_id"]),
                args.number,
                args.repeat,
            ),
            measure(
                f"decrypt one {FRAME_BYTES // 1024} KiB reference frame",
                lambda: decrypt(data_key, blob, aad=aad),
                args.number,
                args.repeat,
            ),
        ]

    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}; {args.number} calls x {args.repeat} repeats"
    )
    print(f"# token: {len(token)} characters")
    print("| measure | median µs/call | best µs/call |")
    print("| --- | --- | --- |")
    for name, median, best in rows:
        print(f"| {name} | {median:.1f} | {best:.1f} |")


if __name__ == "__main__":
    main()
