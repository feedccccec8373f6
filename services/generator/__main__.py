"""Runs the generator service."""

from alive.service import serve
from services.generator.settings import GeneratorSettings
from services.generator.stage import GeneratorStage

if __name__ == "__main__":
    serve(GeneratorStage, GeneratorSettings())
