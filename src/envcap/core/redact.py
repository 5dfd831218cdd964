"""Keep secrets on the machine: redaction of environment values, URLs and free text.

Everything envcap keeps from the outside world (environment values, URLs recorded by
installers, build flags, command lines) passes through here before it is hashed, stored
or printed. The rules err on the side of redacting, but leave ordinary values intact:
PATH, CUDA_HOME, SLURM_JOB_ID and their kin come through unchanged.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Iterable, Iterator

if TYPE_CHECKING:
    from .config import Config

REDACTED = "[REDACTED]"

# Variable names whose values are secret whatever they look like. Matched as substrings
# of the upper-cased name, except KEY and AUTH, which are matched per "_"-separated word
# (a word ending in KEY, or starting with AUTH) so that names such as KEYBOARD stay
# readable while API_KEY, APIKEY and AUTH_HEADER do not.
SECRET_NAME_SUBSTRINGS = ("TOKEN", "SECRET", "PASS", "CREDENTIAL", "PRIVATE")
# The shell's working directories, whose names hold the word PWD but no password.
_NOT_SECRET_NAMES = frozenset({"PWD", "OLDPWD"})
# Words that hold TOKEN or PASS and name no secret (a tokenizer, a count of tokens or of
# passes, a cache bypass): taken out of a name before the substrings are looked for, so
# that TOKENIZERS_PARALLELISM keeps its value and a `max_tokens: 512` config is kept.
_BENIGN_WORDS = re.compile(r"TOKENI[SZ][A-Z]*|TOKENS(?![A-Z])|BYPASS|PASSTHROUGH|COMPASS|PASSENV|PASSAGES?|PASSES")

# Recognisable secret formats inside any text.
SECRET_PATTERNS: tuple[str, ...] = (
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)",
    r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[0-9A-Z]{16}\b",  # AWS access key ids
    r"\bgh[pousr]_[A-Za-z0-9]{30,}\b",  # GitHub tokens
    r"\bgithub_pat_[A-Za-z0-9_]{20,}\b",
    r"\bglpat-[A-Za-z0-9_\-]{20,}\b",  # GitLab personal access tokens
    r"\bgl(?:dt|ptt|rt|soat|cbt)-[A-Za-z0-9_\-]{20,}\b",
    r"\bhf_[A-Za-z0-9]{30,}\b",  # Hugging Face
    r"\bxox[abposr]-[A-Za-z0-9\-]{10,}\b",  # Slack tokens
    r"https://hooks\.slack\.com/services/[A-Za-z0-9/]+",
    r"\beyJ[A-Za-z0-9_\-]{5,}\.eyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]{5,}",  # JWTs
    r"\bAIza[0-9A-Za-z_\-]{35}\b",  # Google API keys
    r"\bsk-(?:proj-|ant-)?[A-Za-z0-9_\-]{20,}\b",  # OpenAI / Anthropic style keys
    r"\bnpm_[A-Za-z0-9]{36}\b",
    r"\bpypi-[A-Za-z0-9_\-]{50,}\b",
)
# Text that holds none of these cannot match any pattern above (each pattern needs one
# of them): checking for them is a plain substring search, far cheaper than running the
# expression over a record of a hundred kilobytes.
SECRET_HINTS: tuple[str, ...] = (
    "PRIVATE KEY", "AKIA", "ASIA", "AGPA", "AIDA", "AROA", "ANPA", "ANVA", "AIPA",
    "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "glpat-", "gldt-", "glptt-", "glrt-",
    "glsoat-", "glcbt-", "hf_", "xox", "hooks.slack.com", "eyJ", "AIza", "sk-", "npm_", "pypi-",
)

# user:pass@ and bare token@ in a URL's authority. "git@" (the ssh user of every git
# host) is kept: it names no one and hides nothing.
_URL_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/@\s?#]+)@")
_BENIGN_USERS = frozenset({"git", "hg", "svn"})
# Query parameters that carry credentials (?token=, &sig= for cloud SAS URLs, ...).
_SECRET_QUERY = re.compile(
    r"(?i)([?&;](?:[a-z0-9_\-]*(?:token|secret|password|passwd|key|sig|signature|auth|credential)[a-z0-9_\-]*)=)[^&#\s]+"
)
# conda's token-in-path form: https://conda.anaconda.org/t/<token>/channel
_CONDA_TOKEN = re.compile(r"(/t/)[A-Za-z0-9\-_]{6,}(/)")
# An HTTP Authorization header (curl -H, a config file, a log line): its whole value.
_AUTH_HEADER = re.compile(r"(?i)\b((?:proxy-)?authorization[\"']?[ \t]*[:=][ \t]*)[^\"'\r\n]+")
# A NAME=value or NAME: value assignment (a shell script, a .env or YAML file, a libpq
# connection string "host=db password=x", a JSON member): redacted when NAME is a secret
# name and the value is a literal. Values that name where the secret comes from
# ($VAR, os.environ[...], a call, a template) or are placeholders are kept, so that
# code which reads a secret is not mistaken for code which holds one. Quotes and tabs may
# be escaped, so that the same text is found inside a serialized JSON string (what
# may_contain_secret scans). A name starts only
# where no name character precedes it, so a long run of name characters is scanned once.
_ASSIGNMENT = re.compile(
    r"(?<![A-Za-z0-9_.\-])(?P<name>[A-Za-z_][A-Za-z0-9_.\-]*)"
    r"(?P<sep>(?:\\?[\"'])?(?:[ \t]|\\t)*(?:=|:(?!//))(?:[ \t]|\\t)*)(?P<quote>(?:\\?[\"'])?)"
    r"(?=[^\s\"'`&;,(){}\[\]<>$%*\\])"
)
# The value: matched at the end of an assignment, apart from it, so that the search for
# assignments also looks inside values ("x=password=secret", a JSON string holding one).
_VALUE = re.compile(r"[^\s\"'`&;,(){}\[\]<>$%*\\]+")
# Every secret name holds one of these (case-insensitively): the cheap test that keeps
# the assignment expression off text that cannot hold a secret assignment.
_HINT_WORDS = "pass|pw|pat|secret|token|key|auth|credential|private"
_ASSIGNMENT_HINT = re.compile(f"(?i){_HINT_WORDS}")
# The rest of a name from a point inside it, and an assignment's separator after a name.
_NAME_REST = re.compile(r"[A-Za-z0-9_.\-]*")
_NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")
_SEPARATOR = re.compile(r"(?:\\?[\"'])?(?:[ \t]|\\t)*(?:=|:(?!//))")
_PLACEHOLDERS = frozenset({"none", "null", "nil", "true", "false", "str", "bytes", "int", "string", "optional",
                           "secretstr", "any", "required", "changeme", "xxx", "env", "os.environ", "os.getenv",
                           "getenv", "environ", "input", "getpass", "getpass.getpass"})
# Command-line options whose next argument (or attached value, "-pX") is a password:
# mysql's and many tools' -p, and curl's -u/--user user:password (the part after ":").
_PASSWORD_FLAGS = frozenset({"-p"})
_USER_FLAGS = frozenset({"-u", "--user", "--proxy-user", "-U"})


class Redactor:
    """Decides which names are secret and scrubs secret content out of text."""

    def __init__(
        self,
        extra_names: Iterable[str] = (),
        extra_patterns: Iterable[str] = (),
    ) -> None:
        self._name_substrings = tuple(SECRET_NAME_SUBSTRINGS) + tuple(n.upper() for n in extra_names)
        # Every secret name holds one of these: the one search that lets most names of an
        # assignment (a serialized record's thousands of "name": "…" members) skip
        # is_secret_name.
        self._name_hint = re.compile("|".join([_ASSIGNMENT_HINT.pattern, *(re.escape(n) for n in extra_names)]),
                                     re.IGNORECASE) if extra_names else _ASSIGNMENT_HINT
        # The same hints for ASCII text lower-cased (see _hints): a case-sensitive search,
        # about ten times as fast as the case-insensitive one (which folds every character
        # it tries), with the same matches at the same offsets (lower-casing ASCII keeps
        # the length). None when a configured name is not ASCII.
        names = [n.lower() for n in extra_names]
        self._name_hint_lower = (re.compile("|".join([_HINT_WORDS, *(re.escape(n) for n in names)]))
                                 if all(n.isascii() for n in names) else None)
        # A user's pattern may be anchored, and would then miss inside a serialized
        # record: with any configured, every record is scrubbed string by string.
        self._always_deep = bool(tuple(extra_patterns))
        self._text = re.compile(
            "|".join(f"(?:{p})" for p in (*SECRET_PATTERNS, *extra_patterns)), re.DOTALL
        )

    def is_secret_name(self, name: str) -> bool:
        upper = name.upper()
        if "TOKEN" in upper or "PASS" in upper:
            upper = _BENIGN_WORDS.sub("_", upper)
        if any(s in upper for s in self._name_substrings):
            return True
        for word in re.split(r"[^A-Z0-9]+", upper):
            if word.endswith("KEY") or word == "KEYS" or word.startswith("AUTH"):
                return True
            if word in ("PWD", "PW", "PAT") and upper not in _NOT_SECRET_NAMES:
                return True
        return False

    def text(self, value: str) -> str:
        """Return ``value`` with every recognisable secret replaced."""
        if not value:
            return value
        out = self._text.sub(REDACTED, value)
        if "@" in out:
            out = _URL_USERINFO.sub(_scrub_userinfo, out)
        if "=" in out:
            out = _SECRET_QUERY.sub(lambda m: m.group(1) + REDACTED, out)
        if "/t/" in out:
            out = _CONDA_TOKEN.sub(lambda m: m.group(1) + REDACTED + m.group(2), out)
        if self._has_hint(out):
            out = _AUTH_HEADER.sub(lambda m: m.group(1) + REDACTED, out)
            out = self._scrub_assignments(out)
        return out

    def _secret_values(self, text: str) -> list[tuple[int, int]]:
        """The (start, end) of each value assigned to a secret name in ``text``."""
        spans: list[tuple[int, int]] = []
        for m in _ASSIGNMENT.finditer(text):
            if spans and m.start() < spans[-1][1]:
                continue  # inside a value already found
            value = _VALUE.match(text, m.end())
            assert value is not None  # the lookahead saw its first character
            after = text[value.end():value.end() + 1]
            literal = value.group(0)
            name = m.group("name")
            if (after in ("(", "[") or literal == REDACTED[1:-1] or literal.lower() in _PLACEHOLDERS
                    or not self._name_hint.search(name) or not self.is_secret_name(name)):
                continue  # a call, an index, a placeholder: where the secret comes from
            spans.append((value.start(), value.end()))
        return spans

    def _scrub_assignments(self, text: str) -> str:
        spans = self._secret_values(text)
        if not spans:
            return text
        out, pos = [], 0
        for start, end in spans:
            out += [text[pos:start], REDACTED]
            pos = end
        out.append(text[pos:])
        return "".join(out)

    def _has_secret_assignment(self, text: str) -> bool:
        return self._hinted_assignment(text) and (bool(_AUTH_HEADER.search(text)) or bool(self._secret_values(text)))

    def _hinted_assignment(self, text: str) -> bool:
        """Whether a secret name is assigned anywhere in ``text``: the linear scan that
        keeps the assignment expression (a match per JSON member of a serialized record)
        off the text of most sections. Every secret name holds a hint, and the whole run
        of name characters around a hint is the only name an assignment there can have,
        so it never says no where :meth:`_secret_values` would find a value."""
        end = 0
        for hint in self._hints(text):
            if hint.start() < end:
                continue  # in the name the last hint's scan already ran over
            start = hint.start()
            while start > end and text[start - 1] in _NAME_CHARS:
                start -= 1
            rest = _NAME_REST.match(text, hint.end())
            end = rest.end() if rest is not None else hint.end()
            if _SEPARATOR.match(text, end) and self.is_secret_name(text[start:end]):
                return True
        return False

    def _hints(self, text: str) -> Iterator[re.Match[str]]:
        """Every hint of a secret name in ``text`` (:attr:`_name_hint`), found over the text
        lower-cased when it is ASCII (the same matches at the same offsets)."""
        if self._name_hint_lower is not None and text.isascii():
            return self._name_hint_lower.finditer(text.lower())
        return self._name_hint.finditer(text)

    def _has_hint(self, text: str) -> bool:
        """Whether ``text`` holds a hint of a secret name, a configured one included."""
        return next(iter(self._hints(text)), None) is not None

    def may_contain_secret(self, serialized: str) -> bool:
        """Whether a JSON text (a whole record) may hold anything :meth:`text` replaces.

        One scan of the serialized record, instead of one per string inside it; it can
        only err towards scrubbing (every pattern matches inside the JSON text wherever
        it matches inside a string of the record).
        """
        if self._always_deep:
            return True
        if any(hint in serialized for hint in SECRET_HINTS) and self._text.search(serialized):
            return True
        if "://" in serialized and "@" in serialized and _URL_USERINFO.search(serialized):
            return True
        if "=" in serialized and _SECRET_QUERY.search(serialized):
            return True
        if "/t/" in serialized and _CONDA_TOKEN.search(serialized) is not None:
            return True
        return self._has_hint(serialized) and self._has_secret_assignment(serialized)

    def value(self, name: str, value: str) -> str:
        """Redact an environment-style NAME=value pair's value."""
        if self.is_secret_name(name):
            return REDACTED
        return self.text(value)

    def deep(self, obj: Any) -> Any:
        """Redact every string inside a JSON value, keys included (a safety net over whole
        records: a metric's or a label's name is a key)."""
        if isinstance(obj, str):
            return self.text(obj)
        if isinstance(obj, dict):
            return {(self.text(k) if isinstance(k, str) else k): self.deep(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return [self.deep(v) for v in obj]
        return obj

    def argv(self, args: Iterable[str]) -> list[str]:
        """Redact a command line: ``--token X``, ``--api-key=X``, ``--pass=X``, ``KEY=V``,
        ``-p X`` and ``-pX``, ``-u user:X``, ``-H "Authorization: Bearer X"`` forms."""
        out: list[str] = []
        hide_next = False
        password_next = False  # after -p: the next word, unless it is an option
        user_next = False
        for arg in args:
            if hide_next or (password_next and not (arg.startswith("-") and len(arg) > 1)):
                out.append(REDACTED)
                hide_next = password_next = False
                continue
            password_next = False
            if user_next:
                user_next = False
                user, colon, _ = arg.partition(":")
                out.append(f"{self.text(user)}:{REDACTED}" if colon else self.text(arg))
                continue
            if arg in _PASSWORD_FLAGS:
                out.append(arg)
                password_next = True
                continue
            if arg in _USER_FLAGS:
                out.append(arg)
                user_next = True
                continue
            if arg[:2] in _PASSWORD_FLAGS and len(arg) > 2 and arg[2] != "=":
                out.append(arg[:2] + REDACTED)
                continue
            if arg.startswith("--user=") or arg.startswith("-u") and ":" in arg:
                flag = "--user=" if arg.startswith("--user=") else "-u"
                user, colon, _ = arg[len(flag):].partition(":")
                out.append(f"{flag}{self.text(user)}:{REDACTED}" if colon else self.text(arg))
                continue
            if arg.startswith("-") and "=" in arg:
                flag, _, val = arg.partition("=")
                out.append(f"{flag}={REDACTED}" if self.is_secret_name(flag.lstrip("-").replace("-", "_")) else self.text(arg))
                continue
            if arg.startswith("-") and self.is_secret_name(arg.lstrip("-").replace("-", "_")):
                out.append(arg)
                hide_next = True
                continue
            name, eq, val = arg.partition("=")
            if eq and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) and self.is_secret_name(name):
                out.append(f"{name}={REDACTED}")
                continue
            out.append(self.text(arg))
        return out


    def commands_hold_secret(self, text: str) -> bool:
        """Whether a script's command lines pass a secret as an argument (``deploy --token X``,
        ``curl -u user:X``, ``sshpass -p X``): each line split as the shell would and read
        as :meth:`argv` reads a command line. ``-p`` counts only for the commands where it
        means a password (``mkdir -p`` does not)."""
        return bool(self._command_secrets(text, first=True))

    def free_text(self, text: str) -> str:
        """:meth:`text`, and the secrets passed on command lines inside it (a note saying
        ``ran deploy --token X``) replaced too."""
        out = self.text(text)
        for secret in self._command_secrets(out):
            out = out.replace(secret, REDACTED)
        return out

    def _command_secrets(self, text: str, *, first: bool = False) -> list[str]:
        import shlex

        found: list[str] = []
        for line in text.replace("\\\n", " ").splitlines():
            if "-" not in line:
                continue
            try:
                lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|()")
                lexer.whitespace_split = True
                lexer.commenters = "#"
                words = list(lexer)
            except ValueError:
                continue
            command: list[str] = []
            for word in [*words, ";"]:
                if word and set(word) <= set(";&|()"):
                    if command:
                        found += self._argv_secrets(command)
                        if found and first:
                            return found
                    command = []
                else:
                    command.append(word)
        return found

    def _argv_secrets(self, words: list[str]) -> list[str]:
        program = words[0].rsplit("/", 1)[-1]
        password_p = program in _P_IS_PASSWORD or "login" in words[1:3]
        found: list[str] = []
        for i, (before, after) in enumerate(zip(words, self.argv(words))):
            if before == after or REDACTED not in after:
                continue
            by_p = before.startswith("-p") or (i > 0 and words[i - 1] in _PASSWORD_FLAGS)
            if by_p and not password_p:
                continue
            value = before[2:] if before.startswith("-p") and len(before) > 2 else before
            value = value.rsplit("=", 1)[-1].rsplit(":", 1)[-1]
            if not value or _SHELL_REFERENCE.fullmatch(value) or value.lower() in _PLACEHOLDERS:
                continue  # $TOKEN, ${TOKEN}, $(pass show x): where the secret comes from, not the secret
            found.append(value)
        return found


_SHELL_REFERENCE = re.compile(r"\$(\{[^}]*\}|\w+|\(.*\))|%\w+%")
# The programs whose -p takes a password (for mkdir, cp, ssh, psql... it is something else).
_P_IS_PASSWORD = frozenset({"mysql", "mysqldump", "mysqladmin", "mariadb", "mariadb-dump", "sshpass", "rabbitmqctl"})


def _scrub_userinfo(m: re.Match[str]) -> str:
    userinfo = m.group("userinfo")
    if ":" not in userinfo and userinfo in _BENIGN_USERS:
        return m.group(0)
    return f"{m.group('scheme')}{REDACTED}@"


_default: Redactor | None = None


def default_redactor(cfg: Config | None = None) -> Redactor:
    """The redactor configured for this process (built-in lists plus the user's config).

    A caller that has already read the configuration passes it, so it is read once.
    """
    global _default
    if _default is None:
        if cfg is None:
            from . import config

            cfg = config.load()
        _default = Redactor(cfg.redact_names, cfg.redact_patterns)
    return _default


def reset_default() -> None:
    """Forget the cached redactor (tests that change the configuration call this)."""
    global _default
    _default = None
