"""Provenance of rendered clips: the visible mark drawn into every render, the C2PA manifest
signed into every published file, the perceptual fingerprints (PDQ per frame) that find a
clip again when its manifest is stripped or the file re-encoded, and the verifier that uses
both."""
