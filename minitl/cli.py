"""The ``minitl`` command.

    minitl exercises list                      the exercises: id, file:line, tests, hint
    minitl exercises export DIR [--only ID..]  write a student copy with the exercises stubbed
    minitl exercises check ID [-- PYTEST_ARGS] run one exercise's tests (inside the copy)
    minitl exercises verify [ID..]             prove each exercise's tests fail on its stub
    minitl lesson [N] [--step] [--fast] [--notebook [PATH]]
    minitl tour [--fast] [--out DIR] [--html]

Adding a command: write ``add_<name>_parser(subparsers)`` that adds its parser and sets
``func`` to a handler taking the parsed args and returning an exit code, then append it to
``COMMANDS``. Import heavy modules inside the handler, never at the top of this file, so that
``minitl --help`` stays instant.
"""
from __future__ import annotations

import argparse
import sys


# --------------------------------------------------------------------------- exercises


def _exercises_list(args) -> int:
    from minitl import exercises as ex

    found = ex.find_exercises(args.root)
    tests = ex.tests_by_exercise(args.root)
    if not found:
        print("no exercises found")
        return 0
    width = max(len(e.id) for e in found)
    where = max(len(e.location) for e in found)
    print(f"{'id':<{width}}  {'where':<{where}}  tests  hint")
    for e in found:
        print(f"{e.id:<{width}}  {e.location:<{where}}  {len(tests.get(e.id, [])):>5}  {e.hint}")
    print(f"\n{len(found)} exercises")
    return 0


def _exercises_export(args) -> int:
    from minitl import exercises as ex

    stubbed = ex.export(args.dest, only=args.only, root=args.root)
    files = {e.file for e in stubbed}
    print(f"Wrote a student copy to {args.dest}: {len(stubbed)} exercises stubbed in {len(files)} files.")
    if stubbed:
        print(f"Next: cd {args.dest} && minitl exercises list && minitl exercises check {stubbed[0].id}")
    return 0


def _exercises_check(args) -> int:
    from minitl import exercises as ex

    return ex.check(args.id, root=args.root, pytest_args=args.pytest_args)


def _exercises_verify(args) -> int:
    from minitl import exercises as ex

    results = ex.verify(args.root, only=args.ids or None, jobs=args.jobs)
    for result in results:
        print(result.summary())
    bad = [r for r in results if not r.ok]
    print(f"\n{len(results) - len(bad)} of {len(results)} exercises sound")
    return 1 if bad else 0


def add_exercises_parser(subparsers) -> None:
    parser = subparsers.add_parser("exercises", help="list, export, check and verify exercises")
    parser.add_argument("--root", default=None,
                        help="project folder (default: the one holding the current folder)")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    actions.add_parser("list", help="id, file:line, number of tests and hint of each exercise"
                       ).set_defaults(func=_exercises_list)

    export = actions.add_parser("export", help="write a student copy with the exercises stubbed")
    export.add_argument("dest", help="new or empty folder for the copy")
    export.add_argument("--only", nargs="+", metavar="ID", help="stub only these exercises")
    export.set_defaults(func=_exercises_export)

    check = actions.add_parser("check", help="run the tests of one exercise (in this project)")
    check.add_argument("id")
    check.add_argument("pytest_args", nargs=argparse.REMAINDER,
                       help="extra pytest arguments after --, e.g. -- -x -q")
    check.set_defaults(func=_exercises_check)

    verify = actions.add_parser("verify", help="prove each exercise's tests fail on its stub")
    verify.add_argument("ids", nargs="*", metavar="ID", help="only these (default: all)")
    verify.add_argument("--jobs", type=int, default=2, help="pytest runs at a time (default 2)")
    verify.set_defaults(func=_exercises_verify)


# --------------------------------------------------------------------------- lessons


def _lesson(args) -> int:
    from minitl import lesson_runner as lessons

    if args.lesson is None:
        for lesson in lessons.find_lessons():
            print(f"{lesson.number:3d}  {lesson.slug:<20} {lesson.title}")
        return 0
    lesson = lessons.get_lesson(args.lesson)
    if args.notebook is not None:
        path = lessons.write_notebook(lesson, args.notebook or None)
        print(f"wrote {path}")
        return 0
    try:
        lessons.run_lesson(lesson, step=args.step, fast=args.fast)
    except lessons.LessonError as err:
        print(f"\n{err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    return 0


def add_lesson_parser(subparsers) -> None:
    parser = subparsers.add_parser("lesson", help="run a lesson (no N: list the lessons)")
    parser.add_argument("lesson", nargs="?", metavar="N",
                        help="lesson number, slug, or path of a lesson file")
    parser.add_argument("--step", action="store_true",
                        help="pause after each cell (Enter: next, q: quit)")
    parser.add_argument("--fast", action="store_true", help="small data (sets MINITL_FAST=1)")
    parser.add_argument("--notebook", nargs="?", const="", default=None, metavar="PATH",
                        help="write the lesson as an .ipynb (default: lesson_NN_slug.ipynb) "
                             "instead of running it")
    parser.set_defaults(func=_lesson)


def _tour(args) -> int:
    from minitl import lesson_runner as lessons

    return lessons.run_tour(out=args.out, fast=args.fast, html=args.html)


def add_tour_parser(subparsers) -> None:
    parser = subparsers.add_parser("tour", help="run every lesson and write one report")
    parser.add_argument("--fast", action="store_true", help="run each lesson on small data")
    parser.add_argument("--out", default=None, help="report folder (default: minitl_output/tour)")
    parser.add_argument("--html", action="store_true", help="also write report.html")
    parser.set_defaults(func=_tour)


# --------------------------------------------------------------------------- delegated commands
#
# Experiments and trainers own their options: each module has a ``*_main(argv)`` with its own
# argparse (so ``python -m`` on the module works too); the ``minitl`` command hands it the rest
# of the command line, ``--help`` included.

DELEGATED = {
    # name: (module, function, one-line help)
    "word2vec": ("minitl.embeddings.word2vec", "word2vec_main",
                 "train word2vec (skip-gram/CBOW) on GCIDE or a text file and evaluate it"),
    "glove": ("minitl.embeddings.glove", "glove_main", "train GloVe vectors and evaluate them"),
    "pretrain": ({"resnet-mini": ("minitl.pretrained", "pretrain_main")},
                 "pretrain a model on the source task and cache it: pretrain resnet-mini"),
    "experiment": ({"transfer": ("minitl.experiments.transfer_table", "experiment_transfer_main"),
                    "fashion-cnn": ("minitl.experiments.fashion_cnn", "main")},
                   "run a chapter experiment: experiment transfer | fashion-cnn"),
}


def _delegate(name, rest) -> int:
    import importlib

    entry = DELEGATED[name]
    if isinstance(entry[0], dict):  # a family: `minitl experiment transfer ...`
        targets = entry[0]
        if not rest or rest[0] not in targets:
            print(f"usage: minitl {name} {{{','.join(targets)}}} [options]  (--help after the name for its options)",
                  file=sys.stderr)
            return 2
        (module, function), rest = targets[rest[0]], rest[1:]
    else:
        module, function, _ = entry
    result = getattr(importlib.import_module(module), function)(list(rest))
    # an int is an exit status; the experiment mains return their results (for callers in
    # Python), which on the command line mean success
    return result if isinstance(result, int) and not isinstance(result, bool) else 0


def add_delegated_parsers(subparsers) -> None:
    for name, entry in DELEGATED.items():
        parser = subparsers.add_parser(name, help=entry[-1], add_help=False)
        parser.add_argument("rest", nargs=argparse.REMAINDER)
        parser.set_defaults(func=lambda args, name=name: _delegate(name, args.rest))


# --------------------------------------------------------------------------- main

COMMANDS = [add_exercises_parser, add_lesson_parser, add_tour_parser, add_delegated_parsers]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="minitl", description="minitl: transfer learning built from scratch in NumPy")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_parser in COMMANDS:
        add_parser(subparsers)
    return parser


def main(argv=None) -> int:
    from minitl import cpu_runtime

    cpu_runtime.tune()  # a command that trains: keep freed memory, let idle BLAS threads sleep
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in DELEGATED:  # its own parser reads the rest, --help included
        return _delegate(argv[0], argv[1:])
    args = build_parser().parse_args(argv)
    if getattr(args, "pytest_args", None) and args.pytest_args[0] == "--":
        args.pytest_args = args.pytest_args[1:]
    try:
        return args.func(args)
    except Exception as err:
        # Our own "you asked for something wrong" errors get one clear line, not a traceback.
        from minitl.exercises import ExerciseError
        from minitl.lesson_runner import LessonError
        if isinstance(err, (ExerciseError, LessonError)):
            print(f"minitl: error: {err}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
