"""The ``minitl`` command.

    minitl exercises list                      the exercises in lesson order, with prerequisites
    minitl exercises export DIR [--lesson N | --only ID..]   a student copy, exercises stubbed
    minitl exercises check ID [-- PYTEST_ARGS] run one exercise's tests (inside the copy)
    minitl exercises status                    not started / failing / passing, per exercise
    minitl exercises grade SUBMISSIONS/ [--json PATH] [--csv PATH]   grade a class
    minitl exercises verify [ID..]             prove each exercise's tests fail on its stub
    minitl exercises deps [--write]            find which exercises' stubs block others' tests
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
    from minitl import exercise_runs as runs
    from minitl import exercises as ex

    root = ex.project_root(args.root)
    syllabus = ex.Syllabus.read(root)
    found = syllabus.sort(ex.find_exercises(root))
    tests = ex.tests_by_exercise(root)
    if not found:
        print("no exercises found")
        return 0
    rows = [(str(syllabus.lesson_of(e.id) or "-"), e.id, e.location, str(len(tests.get(e.id, []))),
             e.hint) for e in found]
    headers = ("lesson", "id", "where", "tests", "hint")
    widths = [max(len(h), *(len(r[k]) for r in rows)) for k, h in enumerate(headers[:-1])]
    for row in [headers, *rows]:
        cells = [c.rjust(w) if k in (0, 3) else c.ljust(w) for k, (c, w) in enumerate(zip(row, widths))]
        print("  ".join(cells + [row[-1]]))
    print(f"\n{len(found)} exercises, in the order the lessons meet them.")
    needs = runs.load_prerequisites(root)
    listed = [e for e in found if needs.get(e.id)]
    if listed:
        print("\nPrerequisites: the tests of these exercises also run the code of others, found by "
              "running\n(`minitl exercises deps`); `check` says when one of them is still a stub.")
        width = max(len(e.id) for e in listed)
        for e in listed:
            print(f"  {e.id:<{width}}  needs {', '.join(needs[e.id])}")
    return 0


def _exercises_export(args) -> int:
    from minitl import exercises as ex

    stubbed = ex.export(args.dest, only=args.only, root=args.root, lesson=args.lesson)
    files = {e.file for e in stubbed}
    scope = f" (lessons 1-{args.lesson})" if args.lesson is not None else ""
    print(f"Wrote a student copy to {args.dest}: {len(stubbed)} exercises{scope} stubbed in "
          f"{len(files)} files; the fast paths are off there, so your code is what runs.")
    if stubbed:
        print(f"Next: cd {args.dest} && minitl exercises list && minitl exercises check {stubbed[0].id}")
    return 0


def _exercises_check(args) -> int:
    from minitl import exercise_runs as runs

    return runs.check(args.id, root=args.root, pytest_args=args.pytest_args)


def _exercises_status(args) -> int:
    from minitl import exercise_runs as runs

    rows, note = runs.status(args.root, timeout=args.timeout)
    if not rows:
        print("no exercises in this copy")
        return 0
    width = max(len("exercise"), *(len(r.outcome.id) for r in rows))
    print(f"lesson  {'exercise':<{width}}  {'status':<11}  detail")
    for row in rows:
        state, detail = row.outcome.status()
        print(f"{row.lesson if row.lesson is not None else '-':>6}  {row.outcome.id:<{width}}  "
              f"{state:<11}  {detail}".rstrip())
    print(f"\ntotal: {runs.summarize_states([r.outcome for r in rows])}")
    if note:
        print(note)
    return 0


def _exercises_verify(args) -> int:
    from minitl import exercise_runs as runs

    results = runs.verify(args.root, only=args.ids or None, jobs=args.jobs)
    for result in results:
        print(result.summary())
    bad = [r for r in results if not r.ok]
    print(f"\n{len(results) - len(bad)} of {len(results)} exercises sound")
    return 1 if bad else 0


def _exercises_deps(args) -> int:
    from minitl import exercise_runs as runs
    from minitl import exercises as ex

    root = ex.project_root(args.root)
    found = ex.find_exercises(root)
    if args.write and args.ids:
        raise ex.ExerciseError("--write records every exercise; leave out the ids")
    prerequisites = runs.find_prerequisites(root, only=args.ids or None, jobs=args.jobs)
    for e in ex.Syllabus.read(root).sort(found):
        if e.id in prerequisites:
            print(f"{e.id}: needs {', '.join(prerequisites[e.id])}")
    print(f"\n{len(prerequisites)} of {len(found)} exercises have tests that need another exercise")
    if args.write:
        print(f"wrote {runs.write_prerequisites(prerequisites, [e.id for e in found], root)}")
    return 0


def _exercises_grade(args) -> int:
    from minitl import grading

    def show(report):
        print(grading.student_table(report) + "\n", flush=True)

    reports = grading.grade(args.submissions, teacher_root=args.tests or args.root, only=args.only,
                            lesson=args.lesson, timeout=args.timeout, memory_mb=args.memory_mb,
                            jobs=args.jobs, on_student=show)
    print(grading.class_summary(reports))
    if args.json:
        import json
        grading.write_atomically(args.json, json.dumps(grading.to_json(reports), indent=1) + "\n")
        print(f"wrote {args.json}")
    if args.csv:
        grading.write_atomically(args.csv, grading.to_csv(reports))
        print(f"wrote {args.csv}")
    return 0


def _add_choice(parser) -> None:
    """--only ID.. | --lesson N: which exercises (default: all)."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--only", nargs="+", metavar="ID", help="only these exercises")
    group.add_argument("--lesson", type=int, metavar="N",
                       help="the exercises of lessons 1..N (the lessons list them)")


def add_exercises_parser(subparsers) -> None:
    parser = subparsers.add_parser("exercises", help="list, export, check, grade the exercises")
    parser.add_argument("--root", default=None,
                        help="project folder (default: the one holding the current folder)")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    actions.add_parser("list", help="the exercises in lesson order (lesson, id, file:line, "
                                    "tests, hint) and their prerequisites"
                       ).set_defaults(func=_exercises_list)

    export = actions.add_parser("export", help="write a student copy with the exercises stubbed")
    export.add_argument("dest", help="new or empty folder for the copy")
    _add_choice(export)
    export.set_defaults(func=_exercises_export)

    check = actions.add_parser("check", help="run the tests of one exercise (in this copy)")
    check.add_argument("id")
    check.add_argument("pytest_args", nargs=argparse.REMAINDER,
                       help="extra pytest arguments after --, e.g. -- -x -q")
    check.set_defaults(func=_exercises_check)

    status = actions.add_parser("status", help="how far this copy has got: not started, "
                                               "failing or passing, per exercise")
    status.add_argument("--timeout", type=float, default=600, metavar="S",
                        help="seconds for the tests before each exercise runs alone (default 600)")
    status.set_defaults(func=_exercises_status)

    grade = actions.add_parser("grade", help="grade a folder of student copies (one per student)")
    grade.add_argument("submissions", help="folder with one folder per student")
    grade.add_argument("--json", metavar="PATH", help="also write every result as JSON")
    grade.add_argument("--csv", metavar="PATH", help="also write one row per student and exercise")
    grade.add_argument("--tests", metavar="PATH", default=None,
                       help="the teacher's minitl checkout whose tests grade (default: this one)")
    _add_choice(grade)
    grade.add_argument("--timeout", type=float, default=120, metavar="S",
                       help="time limit per student and exercise, in seconds (default 120)")
    grade.add_argument("--memory-mb", type=int, default=2048, metavar="MB",
                       help="address-space limit per student and exercise (default 2048; 0: none)")
    grade.add_argument("--jobs", type=int, default=1, help="students graded at a time (default 1)")
    grade.set_defaults(func=_exercises_grade)

    verify = actions.add_parser("verify", help="prove each exercise's tests fail on its stub")
    verify.add_argument("ids", nargs="*", metavar="ID", help="only these (default: all)")
    verify.add_argument("--jobs", type=int, default=2, help="pytest runs at a time (default 2)")
    verify.set_defaults(func=_exercises_verify)

    deps = actions.add_parser("deps", help="find, by running, which exercises' stubs block "
                                           "which others' tests")
    deps.add_argument("ids", nargs="*", metavar="ID", help="stub only these (default: all)")
    deps.add_argument("--jobs", type=int, default=2, help="pytest runs at a time (default 2)")
    deps.add_argument("--write", action="store_true",
                      help=f"record the result in minitl/exercise_deps.json (what `list` shows)")
    deps.set_defaults(func=_exercises_deps)


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
        if isinstance(err.__cause__, BrokenPipeError):  # a cell printed into a closed pipe
            raise err.__cause__
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
    "word2vec": ("minitl.embeddings.cli", "word2vec_main",
                 "train word2vec (skip-gram/CBOW) on GCIDE or a text file and evaluate it"),
    "glove": ("minitl.embeddings.cli", "glove_main", "train GloVe vectors and evaluate them"),
    "pretrain": ({"resnet-mini": ("minitl.pretrained", "pretrain_main"),
                  "elmo": ("minitl.elmo.pretraining", "pretrain_main"),
                  "vit": ("minitl.pretrained_vit", "pretrain_main"),
                  "bert": ("minitl.models.pretraining", "pretrain_bert_main"),
                  "gpt": ("minitl.models.pretraining", "pretrain_gpt_main")},
                 "pretrain a model on the source task and cache it: pretrain resnet-mini | elmo | vit | bert | gpt"),
    "experiment": ({"transfer": ("minitl.experiments.transfer_table", "experiment_transfer_main"),
                    "fashion-cnn": ("minitl.experiments.fashion_cnn", "main"),
                    "elmo": ("minitl.experiments.elmo_features", "experiment_elmo_main"),
                    "ulmfit": ("minitl.experiments.ulmfit", "experiment_ulmfit_main"),
                    "language": ("minitl.experiments.language", "experiment_language_main"),
                    "clip": ("minitl.experiments.clip_zero_shot", "experiment_clip_main"),
                    "peft": ("minitl.experiments.peft_table", "experiment_peft_main")},
                   "run a chapter experiment: experiment transfer | fashion-cnn | elmo | ulmfit | language | clip | peft"),
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


def _quiet_broken_pipe() -> int:
    """The reader of our output went away (`minitl ... | head`): stop quietly, as a Unix tool
    killed by SIGPIPE does (status 128 + 13). Python would otherwise print a traceback now and
    "Exception ignored" when it flushes stdout at exit; point stdout at /dev/null instead."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 141


def main(argv=None) -> int:
    from minitl import cpu_runtime

    cpu_runtime.tune()  # a command that trains: keep freed memory, let idle BLAS threads sleep
    try:
        code = _main(argv)
        sys.stdout.flush()  # a broken pipe shows here when the output fitted in the buffer
        return code
    except BrokenPipeError:
        return _quiet_broken_pipe()


def _main(argv=None) -> int:
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
