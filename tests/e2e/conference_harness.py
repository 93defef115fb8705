"""The package's conference client, under the names the tests use."""

from tessera.translation.client import ConferenceClient as Client
from tessera.translation.client import speech_wav

__all__ = ["Client", "speech_wav"]
