"""The C2PA manifest signed into every published clip, and reading one back (c2pa-python).

What a published file says, signed with the server's chain (provenance.certs):
- a `c2pa.created` action with digitalSourceType trainedAlgorithmicMedia: AI-generated;
- the consent receipt, a custom assertion labelled CONSENT_LABEL (C2PA strips a `.v1`
  suffix from custom labels, so the version is inside the data): the clip id, the sha256 of
  the approved render file (`renderSha256`: what every owner's approval token binds), the
  sha256 of its media packets (`mediaSha256`, below), the parent clip id of a remix, and per
  featured cameo its id and the sha256 of its owner's approval token (null for the author's
  own cameo, which needs no approval). No handle, name or face: ids and hashes only;
- for a remix, the parent's published file as an ingredient (relationship inputTo), which
  carries the parent's own manifest along.

Why the signed file still proves it is the approved render: embedding a manifest rewrites
the container (a uuid box, moved offsets), so the signed file's sha256 is not the render's.
What does not change is the media itself: every audio and video packet, byte for byte.
`mediaSha256` hashes those packets (stream, timestamps, size and bytes, in file order), and
the server signs only after checking that the render it read from the store hashes to the
clip's approved sha256. A verifier then checks (1) the C2PA signature chains to this
server's root, (2) the C2PA hard binding (c2pa.hash.bmff) matches, so nothing outside the
manifest changed since signing, and (3) the file's packets hash to `mediaSha256`: the
pictures and sound are those of the render whose sha256 the approvals name.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import c2pa
from PIL import Image

from provenance.certs import SigningIdentity

__all__ = [
    "CONSENT_LABEL",
    "RECEIPT_VERSION",
    "ManifestReading",
    "check_identity",
    "media_sha256",
    "read_manifest",
    "sign_clip",
]

CONSENT_LABEL = "org.reelgraph.consent"
RECEIPT_VERSION = 1
_GENERATOR = {"name": "reelgraph", "version": "0.1.0"}
_OFFLINE = {"remote_manifest_fetch": False, "ocsp_fetch": False}
# failures that are about trust, not about the file having changed
_TRUST_CODES = {"signingCredential.untrusted", "signingCredential.invalid"}


def media_sha256(path: Path | str) -> str:
    """sha256 of the file's media packets (each: stream index, pts, dts, size, bytes), which
    embedding a manifest leaves untouched."""
    digest = hashlib.sha256()
    with av.open(str(path)) as container:
        for packet in container.demux():
            if packet.size == 0:  # the demuxer's flush packets
                continue
            digest.update(
                f"{packet.stream.index}:{packet.pts}:{packet.dts}:{packet.size}\n".encode()
            )
            digest.update(bytes(packet))
    return digest.hexdigest()


def sign_clip(
    identity: SigningIdentity,
    source: Path,
    dest: Path,
    receipt: dict[str, Any],
    *,
    parent: Path | None = None,
) -> None:
    """Write `source` with a signed manifest embedded to `dest` (a new file). receipt is the
    consent receipt's data (RECEIPT_VERSION is added); parent, a remix parent's file to name
    as an ingredient. Raises c2pa.C2paError (or OSError)."""
    manifest = {
        "claim_generator_info": [_GENERATOR],
        "title": f"reelgraph clip {receipt['clipId']}",
        "assertions": [{"label": CONSENT_LABEL, "data": {"version": RECEIPT_VERSION, **receipt}}],
    }
    context = c2pa.Context.from_dict(
        {"verify": {**_OFFLINE}, "builder": {"thumbnail": {"enabled": False}}}
    )
    info = c2pa.C2paSignerInfo(identity.alg, identity.chain_pem, identity.key_pem, None)
    with c2pa.Signer.from_info(info) as signer, c2pa.Builder(manifest, context=context) as builder:
        builder.set_intent(
            c2pa.C2paBuilderIntent.CREATE, c2pa.C2paDigitalSourceType.TRAINED_ALGORITHMIC_MEDIA
        )
        if parent is not None:
            ingredient = {
                "title": f"reelgraph clip {receipt.get('parentClipId')}",
                "relationship": "inputTo",
            }
            with open(parent, "rb") as parent_file:
                builder.add_ingredient(ingredient, "video/mp4", parent_file)
        with open(source, "rb") as src, open(dest, "w+b") as out:
            builder.sign(signer, "video/mp4", src, out)


def check_identity(identity: SigningIdentity) -> None:
    """Sign a tiny JPEG with the identity: c2pa refuses some chains that load (a signing
    certificate without the digitalSignature key usage, say) only when it signs.
    Raises c2pa.C2paError with its reason."""
    image = io.BytesIO()
    Image.new("RGB", (8, 8), (90, 90, 90)).save(image, format="JPEG")
    image.seek(0)
    manifest = {"claim_generator_info": [_GENERATOR], "title": "signing check"}
    context = c2pa.Context.from_dict(
        {"verify": {**_OFFLINE}, "builder": {"thumbnail": {"enabled": False}}}
    )
    info = c2pa.C2paSignerInfo(identity.alg, identity.chain_pem, identity.key_pem, None)
    with c2pa.Signer.from_info(info) as signer, c2pa.Builder(manifest, context=context) as builder:
        builder.set_intent(
            c2pa.C2paBuilderIntent.CREATE, c2pa.C2paDigitalSourceType.TRAINED_ALGORITHMIC_MEDIA
        )
        builder.sign(signer, "image/jpeg", image, io.BytesIO())


@dataclass
class ManifestReading:
    """What a file's C2PA data says, checked against this server's roots.

    present: it carries C2PA data at all; state: c2pa's validation state (Invalid, Valid or
    Trusted); trusted: signed by a chain to this server's roots (said by c2pa's
    signingCredential.trusted, whatever else failed); intact: no check about the
    file's content failed (hard binding, assertion hashes, signature); receipt: this
    server's consent receipt when the manifest has one; failures: c2pa's failure codes."""

    present: bool
    state: str | None = None
    trusted: bool = False
    intact: bool = False
    receipt: dict[str, Any] | None = None
    ai_generated: bool = False
    ingredients: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    signer: str | None = None


def read_manifest(path: Path | str, anchors_pem: str | None) -> ManifestReading:
    """Read and validate the file's active manifest. anchors_pem: this server's roots (None:
    nothing can be trusted). Raises c2pa.C2paError for a file c2pa cannot parse at all."""
    trust = {"trust_anchors": anchors_pem} if anchors_pem else {}
    context = c2pa.Context.from_dict({"verify": {**_OFFLINE}, "trust": trust})
    with open(path, "rb") as stream:
        reader = c2pa.Reader.try_create("video/mp4", stream, None, context)
        if reader is None:
            return ManifestReading(present=False)
        with reader:
            state = reader.get_validation_state()
            results = reader.get_validation_results() or {}
            active = reader.get_active_manifest() or {}
    outcome = results.get("activeManifest") or {}
    failures = [i.get("code", "") for i in outcome.get("failure", []) if isinstance(i, dict)]
    successes = {i.get("code", "") for i in outcome.get("success", []) if isinstance(i, dict)}
    assertions = {a.get("label"): a.get("data") for a in active.get("assertions", [])}
    receipt = assertions.get(CONSENT_LABEL)
    actions = (assertions.get("c2pa.actions.v2") or assertions.get("c2pa.actions") or {}).get(
        "actions", []
    )
    ai = any(
        str(action.get("digitalSourceType", "")).endswith("/trainedAlgorithmicMedia")
        for action in actions
        if isinstance(action, dict)
    )
    signature = active.get("signature_info") or {}
    return ManifestReading(
        present=True,
        state=state,
        # the chain is this server's even when the file was changed since (state Invalid)
        trusted=bool(anchors_pem) and "signingCredential.trusted" in successes,
        intact=state is not None and not set(failures) - _TRUST_CODES,
        receipt=receipt if isinstance(receipt, dict) else None,
        ai_generated=ai,
        ingredients=[str(i.get("title")) for i in active.get("ingredients", [])],
        failures=failures,
        signer=signature.get("common_name") or signature.get("issuer"),
    )
