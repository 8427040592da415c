"""Every declared option, walked through every door: the `transcribe` and `batch` commands, `jobs submit`,
the form parsing of /transcribe, /v1/audio/transcriptions, /v1/audio/translations and /v1/jobs
(in-process and over real HTTP). Each door that exposes an option accepts it with the declared default
and refuses the same bad value with the same `param`; a door that does not expose it refuses it by name.
A door that drops an option, re-defaults it or checks it differently fails here."""

from __future__ import annotations

import dataclasses

import httpx
import pytest

from amanuensis.cli import build_parser
from amanuensis.cli.flags import form_fields, options_from_args
from amanuensis.errors import OptionsError
from amanuensis.models import resolve_model
from amanuensis.options import (
    BY_FIELD,
    CLI,
    DEFAULT_TEMPERATURES,
    DOORS,
    JOBS,
    NATIVE,
    OPENAI,
    OPTIONS,
    Option,
    TranscribeOptions,
    markdown_table,
)
from amanuensis.server.params import Form, parse_params

from .server_fixtures import SHORT_CLIP, RunningServer, run_server, upload

GOOD = {"bool": None, "int": "2", "float": "3.5", "str": "de", "choice": "translate", "temperature": "0.3",
        "speakers": "alice=data:audio/wav;base64,UklGRiQAAABXQVZF"}
"""A valid value that differs from the default, per kind (bool: the opposite of the default)."""
GOOD_BY_NAME = {"prompt": "Ask not what your country can do for you.", "max_line_width": "32", "max_line_count": "3",
                "max_chars_per_second": "15.5", "vad_threshold": "0.35", "word_alignment": "attention"}
"""Where the kind's value is outside an option's bounds or equals its default."""
BAD = {
    "language": ["xx"],
    "task": ["sideways"],
    "temperature": ["1.5", "warm", "0,2"],
    "beam_size": ["0", "21", "many"],
    "vad_filter": ["maybe"],
    "word_timestamps": ["sometimes"],
    "word_alignment": ["phonetic"],
    "multilingual": ["2"],
    "enable_diarization": ["perhaps"],
    "min_speakers": ["0", "two"],
    "max_speakers": ["-1", "many"],
    "vad_threshold": ["0", "1", "1.5", "nan", "high"],
    "vad_min_silence_ms": ["-1", "10001", "0.5s"],
    "vad_speech_pad_ms": ["-5", "2001", "wide"],
    "max_line_width": ["9", "101", "wide"],
    "max_line_count": ["0", "4", "2.5"],
    "max_words_per_line": ["0", "101"],
    "max_cue_seconds": ["0.5", "61", "nan", "long"],
    "max_chars_per_second": ["0", "101", "inf"],
    "highlight_words": ["karaoke"],
    "known_speakers": ["alice", "=data:audio/wav;base64,UklG", "alice=clip.wav", "alice=data:audio/wav;base64,U!"],
}
"""Values every door must refuse, naming the option (prompt takes any text)."""
HTTP_ROUTES = {"/transcribe": (NATIVE, None), "/v1/audio/transcriptions": (OPENAI, "transcribe"),
               "/v1/audio/translations": (OPENAI, "translate"), "/v1/jobs": (JOBS, None)}
TINY = resolve_model(None)


def good_text(option: Option) -> str:
    if option.kind == "bool":
        return "false" if option.default else "true"
    return GOOD_BY_NAME.get(option.name, GOOD[option.kind])


def expected(option: Option, text: str):
    value = option.parse(text)
    assert value != option.default, f"{option.name}: the test's good value must differ from the default"
    return value


# -- the doors, as functions from {option name: text} to TranscribeOptions (or OptionsError / exit 2) -----


def _argv(values: dict[str, str]) -> list[str]:
    argv = []
    for name, text in values.items():
        option = next(o for o in OPTIONS if o.name == name)
        if option.kind == "bool" and text in ("true", "false"):
            argv.append(option.cli_flag if text == "true" else "--no-" + option.cli_flag.removeprefix("--"))
        elif option.kind == "bool":
            argv.append(f"{option.cli_flag}={text}")  # a switch takes no value: argparse refuses it
        else:
            argv += [option.cli_flag, text]
    return argv


def via_cli(values: dict[str, str], validate: bool = True) -> TranscribeOptions:
    options = options_from_args(build_parser().parse_args(["transcribe", "talk.wav", *_argv(values)]), CLI)
    if validate:
        options.validate(TINY)
    return options


def via_batch(values: dict[str, str], validate: bool = True) -> TranscribeOptions:
    args = build_parser().parse_args(["batch", "talk.wav", "-o", "out", *_argv(values)])
    options = options_from_args(args, CLI)
    if validate:
        options.validate(TINY)
    return options


def via_jobs_submit(values: dict[str, str], validate: bool = True) -> TranscribeOptions:
    """`jobs submit` flags → the form fields it sends → the /v1/jobs door's parsing."""
    fields = form_fields(build_parser().parse_args(["jobs", "submit", "talk.wav", *_argv(values)]))
    return via_form(JOBS, None)(fields, validate)


def via_form(door: str, task: str | None):
    def parse(values: dict[str, str], validate: bool = True) -> TranscribeOptions:
        options = parse_params(door, Form({k: [v] for k, v in values.items()}), task).options
        if validate:
            options.validate(TINY)
        return options

    return parse


COMMAND_DOORS = {"transcribe command": (CLI, via_cli), "batch command": (CLI, via_batch),
                 "jobs submit": (JOBS, via_jobs_submit)}
FORM_DOORS = {route: (door, via_form(door, task)) for route, (door, task) in HTTP_ROUTES.items()}
ALL_DOORS = {**COMMAND_DOORS, **FORM_DOORS}


def test_every_field_is_declared_once_and_every_door_is_known():
    fields = [f.name for f in dataclasses.fields(TranscribeOptions) if f.name != "decoding"]
    assert sorted(fields) == sorted(BY_FIELD), "each TranscribeOptions field has one declaration"
    assert len({o.name for o in OPTIONS}) == len(OPTIONS)
    assert all(set(o.doors) <= set(DOORS) for o in OPTIONS)
    library = TranscribeOptions()
    for option in OPTIONS:
        if option.field == "word_timestamps":  # the library's one documented difference: off unless asked
            assert getattr(library, option.field) is False and option.default is True
        else:
            assert getattr(library, option.field) == option.default, option.name


@pytest.mark.parametrize("door", ALL_DOORS)
def test_defaults_are_the_declared_ones(door):
    name, parse = ALL_DOORS[door]
    options = parse({}, validate=False)
    for option in OPTIONS:
        want = option.default_on(name)
        if option.name == "task" and door == "/v1/audio/translations":
            want = "translate"  # the route is the task
        assert getattr(options, option.field) == want, f"{door} re-defaults {option.name}"


@pytest.mark.parametrize(("door", "option"), [(d, o) for d, (name, _) in ALL_DOORS.items() for o in OPTIONS
                                               if name in o.doors], ids=str)
def test_each_exposed_option_is_accepted_and_reaches_the_options(door, option):
    name, parse = ALL_DOORS[door]
    text = good_text(option)
    options = parse({option.name: text}, validate=False)
    assert getattr(options, option.field) == expected(option, text)


@pytest.mark.parametrize("door", ALL_DOORS)
@pytest.mark.parametrize("option", OPTIONS, ids=lambda o: o.name)
def test_each_bad_value_is_refused_naming_the_option(door, option, capsys):
    name, parse = ALL_DOORS[door]
    exposed_here = name in option.doors
    bad_values = BAD.get(option.name, []) if exposed_here else [good_text(option)]
    if option.name == "task" and name == OPENAI:
        bad_values = ["transcribe"]  # the route fixes the task: the field itself is refused
    for text in bad_values:
        values = {option.name: text}
        if door in COMMAND_DOORS:
            if not exposed_here:
                with pytest.raises(SystemExit) as stopped:
                    parse(values)
                assert stopped.value.code == 2
                assert option.cli_flag.removeprefix("--") in capsys.readouterr().err
                continue
            try:
                parse(values)
            except SystemExit as stopped:  # argparse's one-line error, exit code 2, naming the option or flag
                assert stopped.code == 2
                err = capsys.readouterr().err
                assert option.name in err or option.cli_flag in err, err
                continue
            except OptionsError as exc:  # a model-level check after parsing
                assert exc.param == option.name
                continue
            pytest.fail(f"{door} accepted {option.name}={text!r}")
        with pytest.raises(OptionsError) as refused:
            parse(values)
        assert refused.value.param == option.name, f"{door}: {option.name}={text!r}"
        if not exposed_here:
            assert "unknown" in str(refused.value)


def test_translation_route_names_the_model():
    """The translations route fixes task=translate; an English-only model is what cannot do it."""
    options = parse_params(OPENAI, Form({}), "translate").options
    assert options.task == "translate"
    with pytest.raises(OptionsError) as refused:
        options.validate(TINY)
    assert refused.value.param == "task"  # the intake renames it to "model" for this route (tested over HTTP)


def test_the_readme_option_table_is_the_declaration():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    assert markdown_table() in readme, (
        "README's option table differs from amanuensis.options: paste the output of "
        "python -c 'from amanuensis.options import markdown_table; print(markdown_table())'")


# -- over real HTTP: the running server refuses each bad value with the same param ---------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> RunningServer:
    with run_server(tmp_path_factory.mktemp("parity"), "--data-dir", str(tmp_path_factory.mktemp("data"))) as s:
        yield s


@pytest.mark.slow
@pytest.mark.parametrize("route", HTTP_ROUTES)
def test_over_http_every_door_refuses_and_accepts_as_declared(server, route):
    door, _ = HTTP_ROUTES[route]
    with httpx.Client(base_url=server.url, timeout=60) as http:
        for option in OPTIONS:
            exposed_here = door in option.doors
            bad_values = BAD.get(option.name, []) if exposed_here else [good_text(option)]
            if option.name == "task" and door == OPENAI:
                bad_values = ["transcribe"]
            for text in bad_values:
                response = http.post(route, files=upload(SHORT_CLIP), data={option.name: text})
                assert response.status_code == 400, (route, option.name, text, response.text)
                assert response.json()["error"]["param"] == option.name, (route, option.name, response.text)
            if exposed_here:  # a good value passes the door: the unknown model is what is refused
                data = {option.name: good_text(option), "model": "no-such-model"}
                response = http.post(route, files=upload(SHORT_CLIP), data=data)
                assert response.json()["error"]["param"] == "model", (route, option.name, response.text)
    assert server.uploads_left() == []


@pytest.mark.slow
def test_a_job_stores_the_declared_defaults(server):
    with httpx.Client(base_url=server.url, timeout=60) as http:
        response = http.post("/v1/jobs", files=upload(SHORT_CLIP))
        assert response.status_code == 202, response.text
        stored = response.json()["options"]
    for option in OPTIONS:
        value = stored[option.field]
        want = option.default_on(JOBS)
        assert (tuple(value) if isinstance(value, list) else value) == want, option.name
    assert tuple(stored["temperature"]) == DEFAULT_TEMPERATURES
