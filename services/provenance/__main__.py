"""Runs the provenance service."""

from alive.service import serve
from services.provenance.settings import ProvenanceSettings
from services.provenance.stage import ProvenanceStage

if __name__ == "__main__":
    serve(ProvenanceStage, ProvenanceSettings())
