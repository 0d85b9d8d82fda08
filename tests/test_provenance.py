"""Provenance a published file carries, and provenance that survives stripping.

Through the real app, a real Celery worker and real video files: a clip featuring another
owner's cameo renders, is published by the owner's approval, and its file then reads
"Trusted" against the development root, says it is AI-generated (trainedAlgorithmicMedia)
and carries the consent receipt (the cameo id and the hash of the owner's approval token,
the approved render's sha256); a remix names its parent as an ingredient.
`reelgraph verify` (the real command) and POST /provenance/verify then judge: the intact
file (0, by manifest), a tampered one (1, not intact), re-encoded, scaled and stripped
copies (1, found by fingerprint) and an unrelated video (1, nothing). Start-up refuses a
production server without a chain, and a chain C2PA validators would refuse.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import json
from fractions import Fraction
from pathlib import Path

import av
import c2pa
import pytest
from conftest import GraphQLClient, cameo_of, purge_render_queue, run_cli, start_worker
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from consent.keyring import SigningKeyring
from graph import appearances as appearance_repo
from graph import clips as clip_repo
from graph import provenance as provenance_repo
from provenance.certs import check_signing_settings, load_signing_identity
from provenance.manifest import CONSENT_LABEL, media_sha256, read_manifest, sign_clip
from resolvers.ids import decode_id
from settings import Settings
from startup import StartupError, check_settings
from workers.renderers.base import RenderSpec
from workers.renderers.preview import PreviewRenderer

CREATE = """mutation($input: CreateClipInput!) { createClip(input: $input) { id state } }"""
CLIP = """query($id: ID!) { clip(id: $id) { id state failureReason
  video { url sha256 } } }"""
PUBLISH = "mutation($id: ID!) { publishClip(clipId: $id) { id state video { url sha256 } } }"
APPROVE = "mutation($id: ID!) { approveAppearance(clipId: $id) { id state video { url } } }"


@pytest.fixture(scope="module", autouse=True)
def _no_leftover_tasks(settings) -> None:
    purge_render_queue(settings)


@pytest.fixture(scope="module")
def worker(settings, tmp_path_factory):
    # the suite's consent public keys, for the worker to verify render tokens with: a
    # `reelgraph serve` another module ran on this data folder published its own
    SigningKeyring.load(settings)
    w = start_worker(settings, tmp_path_factory.mktemp("provenance") / "worker.log")
    yield w
    w.stop()


def remux(src: Path, dst: Path) -> Path:
    """The same packets in a new container: the manifest is gone, the media untouched."""
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        streams = {s.index: out.add_stream_from_template(s) for s in inp.streams}
        for packet in inp.demux():
            if packet.dts is None:
                continue
            packet.stream = streams[packet.stream.index]
            out.mux(packet)
    return dst


def reencode(src: Path, dst: Path, *, crf: int = 30, scale: float = 1.0) -> Path:
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        stream = inp.streams.video[0]
        width = int(stream.codec_context.width * scale) // 2 * 2
        height = int(stream.codec_context.height * scale) // 2 * 2
        video = out.add_stream("libx264", rate=stream.average_rate)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.codec_context.time_base = stream.time_base or Fraction(1, 24)
        video.options = {"crf": str(crf), "preset": "medium"}
        for frame in inp.decode(stream):
            scaled = frame.reformat(width=width, height=height, format="yuv420p")
            scaled.pts, scaled.time_base = frame.pts, frame.time_base
            out.mux(video.encode(scaled))
        out.mux(video.encode(None))
    return dst


def tamper(src: Path, dst: Path) -> Path:
    """One byte of the media data changed, well inside the last frames' packets."""
    data = bytearray(src.read_bytes())
    data[len(data) - 3000] ^= 0x5A
    dst.write_bytes(bytes(data))
    return dst


def verify_cli(settings, path: Path) -> tuple[int, dict]:
    done = run_cli(settings, "verify", str(path), "--json")
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, json.loads(done.stdout)


async def draft(gql: GraphQLClient, token: str, prompt: str, **fields) -> dict:
    created = (
        await gql.ok(CREATE, {"input": {"prompt": prompt, "durationSeconds": 3, **fields}}, token)
    )["createClip"]
    clip = await gql.wait_clip(CLIP, token, created["id"], {"DRAFT", "FAILED"}, within_s=120)
    assert clip["state"] == "DRAFT", clip["failureReason"]
    return clip


async def download(gql: GraphQLClient, url: str, dest: Path) -> Path:
    response = await gql.client.get(url)
    assert response.status_code == 200
    await asyncio.to_thread(dest.write_bytes, response.content)
    return dest


@pytest.fixture(scope="module")
async def published(gql: GraphQLClient, graph, services, settings, worker, tmp_path_factory):
    """A clip featuring another owner's cameo, published by that owner's approval, and a
    remix of it; their files as downloaded."""
    folder = tmp_path_factory.mktemp("published")
    owner, author, remixer = (
        await gql.sign_up("cameoowner"),
        await gql.sign_up("creator"),
        await gql.sign_up("remixer"),
    )
    cameo = await cameo_of(graph, services, owner)
    clip = await draft(
        gql, author.token, "a violet balloon drifting over a harbour", cameoIds=[cameo]
    )
    assert (await gql.ok(PUBLISH, {"id": clip["id"]}, author.token))["publishClip"][
        "state"
    ] == "AWAITING_APPROVAL"
    approved = (await gql.ok(APPROVE, {"id": clip["id"]}, owner.token))["approveAppearance"]
    assert approved["state"] == "PUBLISHED"
    signed = await download(gql, approved["video"]["url"], folder / "signed.mp4")
    remix = await draft(gql, remixer.token, "the balloon pops into confetti", remixOf=clip["id"])
    await gql.ok(PUBLISH, {"id": remix["id"]}, remixer.token)
    remix_done = (await gql.ok(APPROVE, {"id": remix["id"]}, owner.token))["approveAppearance"]
    assert remix_done["state"] == "PUBLISHED"
    remix_file = await download(gql, remix_done["video"]["url"], folder / "remix.mp4")
    return {
        "clip": clip,
        "draft_sha256": clip["video"]["sha256"],
        "cameo": decode_id(cameo, "Cameo"),
        "signed": signed,
        "remix": remix,
        "remix_file": remix_file,
        "folder": folder,
        "author": author,
    }


def _read_c2pa(path: Path, context: c2pa.Context) -> tuple[str, dict]:
    with open(path, "rb") as stream, c2pa.Reader("video/mp4", stream, None, context) as reader:
        return reader.get_validation_state(), reader.get_active_manifest()


def dev_root(settings) -> str:
    """The suite's development root (made on first use, as publishing makes it)."""
    return load_signing_identity(settings).anchors_pem


async def test_the_published_file_is_signed_ai_generated_with_a_consent_receipt(
    published, graph, settings
) -> None:
    raw_id = decode_id(published["clip"]["id"], "Clip")
    row = (await clip_repo.clips_by_ids(graph, [raw_id]))[raw_id]
    signed: Path = published["signed"]
    # the clip serves a new, signed file; it keeps the approved render's sha256
    assert row["signedAt"] and row["videoKey"] != row["renderKey"]
    assert row["sha256"] == published["draft_sha256"]
    assert (
        hashlib.sha256(await asyncio.to_thread(signed.read_bytes)).hexdigest()
        == row["signedSha256"]
    )

    context = c2pa.Context.from_dict(
        {"trust": {"trust_anchors": dev_root(settings)}, "verify": {"remote_manifest_fetch": False}}
    )
    state, manifest = await asyncio.to_thread(_read_c2pa, signed, context)
    assert state == "Trusted"
    assertions = {a["label"]: a["data"] for a in manifest["assertions"]}
    (action,) = assertions["c2pa.actions.v2"]["actions"]
    assert action["action"] == "c2pa.created"
    assert action["digitalSourceType"].endswith("/trainedAlgorithmicMedia")
    receipt = assertions[CONSENT_LABEL]
    appearances = (await appearance_repo.appearances_by_clips(graph, [raw_id]))[raw_id]
    token = appearances[0]["approvalToken"]
    assert receipt == {
        "version": 1,
        "clipId": raw_id,
        "renderSha256": published["draft_sha256"],
        "mediaSha256": media_sha256(signed),
        "parentClipId": None,
        "cameos": [
            {
                "cameoId": published["cameo"],
                "approval": "APPROVED",
                "approvalTokenSha256": hashlib.sha256(token.encode()).hexdigest(),
            }
        ],
    }
    # no personal data: ids and hashes only
    text = json.dumps(receipt)
    assert published["author"].handle not in text and "v4.public" not in text

    # the remix names its parent as an ingredient, and in its receipt
    remix = read_manifest(published["remix_file"], dev_root(settings))
    assert remix.trusted and remix.intact and remix.receipt["parentClipId"] == raw_id
    assert remix.ingredients == [f"reelgraph clip {raw_id}"]


async def test_verify_the_intact_file_and_a_tampered_one(published, settings) -> None:
    code, result = verify_cli(settings, published["signed"])
    assert code == 0, result
    assert result["verified"] and result["signed"] and result["intact"]
    assert (result["matchedBy"], result["clipId"]) == ("manifest", published["clip"]["id"])
    assert result["aiGenerated"] is True
    assert result["clip"]["state"] == "PUBLISHED" and result["clip"]["approvedRender"] is True

    code, result = verify_cli(settings, tamper(published["signed"], published["folder"] / "t.mp4"))
    assert code == 1
    assert result["signed"] is True and result["intact"] is False and not result["verified"]
    assert "assertion.bmffHash.mismatch" in result["manifest"]["failures"]
    assert result["matchedBy"] != "manifest"


@pytest.mark.parametrize("kind", ["reencoded", "scaled", "stripped"])
async def test_verify_finds_a_copy_by_its_fingerprint(published, settings, kind) -> None:
    folder, signed = published["folder"], published["signed"]
    copy = {
        "reencoded": lambda: reencode(signed, folder / "crf30.mp4"),
        "scaled": lambda: reencode(signed, folder / "half.mp4", crf=26, scale=0.5),
        "stripped": lambda: remux(signed, folder / "stripped.mp4"),
    }[kind]()
    code, result = verify_cli(settings, copy)
    assert code == 1
    assert result["signed"] is False and result["manifest"]["present"] is False
    assert (result["matchedBy"], result["clipId"]) == ("fingerprint", published["clip"]["id"])
    assert result["fingerprint"]["match"]["share"] >= 0.5


async def test_verify_finds_nothing_for_an_unrelated_video(settings, tmp_path) -> None:
    spec = RenderSpec(
        clip_id="unrelated",
        prompt="an unrelated test pattern of stripes that no one published",
        duration_s=3,
        seed=99,
        author_handle="nobody",
    )
    path = PreviewRenderer().render(spec, lambda _f: None)
    code, result = verify_cli(settings, path.rename(tmp_path / "unrelated.mp4"))
    assert code == 1
    assert result["matchedBy"] is None and result["clipId"] is None and not result["signed"]
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all" * 100)
    done = run_cli(settings, "verify", str(junk))
    assert done.returncode == 2 and "not a video" in done.stderr


async def test_the_api_checks_an_uploaded_file(gql: GraphQLClient, published) -> None:
    viewer = await gql.sign_up("checker")
    auth = {"Authorization": f"Bearer {viewer.token}"}
    http = gql.client

    async def check(path: Path, headers: dict) -> tuple[int, dict]:
        response = await http.post(
            "/provenance/verify",
            content=await asyncio.to_thread(path.read_bytes),
            headers={"content-type": "video/mp4", **headers},
        )
        return response.status_code, response.json()

    status, body = await check(published["signed"], auth)
    assert status == 200 and body["verified"] and body["matchedBy"] == "manifest"
    assert body["clipId"] == published["clip"]["id"]
    status, body = await check(remux(published["signed"], published["folder"] / "api.mp4"), auth)
    assert status == 200 and not body["verified"]
    assert (body["matchedBy"], body["clipId"]) == ("fingerprint", published["clip"]["id"])
    status, body = await check(published["signed"], {})
    assert status == 401 and body["code"] == "UNAUTHENTICATED"
    junk = published["folder"] / "junk.mp4"
    junk.write_bytes(b"\x00" * 5000)
    status, body = await check(junk, auth)
    assert status in (400, 415) and body["code"] == "BAD_USER_INPUT"


async def test_the_signed_file_attaches_only_to_the_render_it_was_made_from(
    published, graph
) -> None:
    raw_id = decode_id(published["clip"]["id"], "Clip")
    refused = await provenance_repo.attach_signed_video(
        graph,
        raw_id,
        render_key="clips/x/" + "0" * 64 + ".mp4",
        render_sha256=published["draft_sha256"],
        signed_key="clips/x/" + "1" * 64 + ".mp4",
        signed_sha256="1" * 64,
        signed_size=1,
        now=1,
    )
    assert refused is None


def _chain(
    tmp_path: Path, *, self_signed: bool = False, eku: bool = True, key_usage: bool = True
) -> tuple[Path, Path]:
    now = datetime.datetime.now(datetime.UTC)
    root_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    name = lambda cn: x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])  # noqa: E731
    root = (
        x509.CertificateBuilder()
        .subject_name(name("operator root"))
        .issuer_name(name("operator root"))
        .public_key(root_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), False)
        .sign(root_key, hashes.SHA256())
    )
    leaf = (
        x509.CertificateBuilder()
        .subject_name(name("operator signer"))
        .issuer_name(name("operator signer") if self_signed else root.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(
                (key if self_signed else root_key).public_key()
            ),
            False,
        )
    )
    if key_usage:
        usage = dict.fromkeys(
            (
                "content_commitment",
                "key_encipherment",
                "data_encipherment",
                "key_agreement",
                "key_cert_sign",
                "crl_sign",
                "encipher_only",
                "decipher_only",
            ),
            False,
        )
        leaf = leaf.add_extension(x509.KeyUsage(digital_signature=True, **usage), critical=True)
    if eku:
        leaf = leaf.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False
        )
    leaf = leaf.sign(key if self_signed else root_key, hashes.SHA256())
    pem = serialization.Encoding.PEM
    chain, key_path = tmp_path / "chain.pem", tmp_path / "signer.key"
    chain.write_bytes(leaf.public_bytes(pem) + root.public_bytes(pem))
    key_path.write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return chain, key_path


def test_production_needs_a_chain_validators_accept(settings, tmp_path: Path) -> None:
    production = settings.model_copy(
        update={"environment": "production", "data_dir": tmp_path / "data"}
    )
    with pytest.raises(StartupError, match="PROVENANCE_CERT_CHAIN"):
        check_settings(production, api=True, worker=False)
    check_signing_settings(production, api=False)  # workers sign nothing

    for folder, options, problem in (
        ("self", {"self_signed": True}, "self-signed"),
        ("noeku", {"eku": False}, "extended key usage"),
        ("nousage", {"key_usage": False}, "C2PA refuses"),
    ):
        (tmp_path / folder).mkdir()
        chain, key = _chain(tmp_path / folder, **options)
        bad = production.model_copy(
            update={"provenance_cert_chain": chain, "provenance_private_key": key}
        )
        with pytest.raises(StartupError, match=problem):
            check_settings(bad, api=True, worker=False)

    (tmp_path / "good").mkdir()
    chain, key = _chain(tmp_path / "good")
    good = production.model_copy(
        update={"provenance_cert_chain": chain, "provenance_private_key": key}
    )
    check_settings(good, api=True, worker=False)
    # the operator's chain signs, and a file it signed verifies against its root
    source = PreviewRenderer().render(
        RenderSpec(clip_id="op", prompt="operator", duration_s=1), lambda _f: None
    )
    signed = tmp_path / "op.mp4"
    receipt = {"clipId": "op", "renderSha256": "0" * 64, "mediaSha256": "0" * 64, "cameos": []}
    sign_clip(load_signing_identity(good), source, signed, receipt)
    source.unlink()
    root = x509.load_pem_x509_certificates(chain.read_bytes())[-1]
    reading = read_manifest(signed, root.public_bytes(serialization.Encoding.PEM).decode())
    assert reading.trusted and reading.intact and reading.receipt["clipId"] == "op"
    # and a development root does not vouch for it
    assert not read_manifest(signed, dev_root(settings)).trusted


def test_a_development_folder_makes_its_chain_once(tmp_path: Path) -> None:
    dev = Settings(_env_file=None, data_dir=tmp_path)
    first = load_signing_identity(dev)
    assert first.alg == "es256"
    assert load_signing_identity(dev).chain_pem == first.chain_pem
    assert (tmp_path / "provenance" / "signer.key").stat().st_mode & 0o777 == 0o600
