"""``train_siamese.py report``: the paper's tables (and its two figures) in one command.

Each cell's result goes to OUT/cells/<cell>.json as it is computed (the format of
``evaluate --output``), so a rerun with the same --output evaluates only what is
missing; ``--results DIR`` adds results computed elsewhere (e.g. ``evaluate --merge
... --output DIR/s1_one-shot_1shot.json`` from sharded evaluations).
"""
from __future__ import annotations

import argparse
import json
import logging
import os

import numpy as np

from mrcnn.cli_support import CLIError, check_output, parse_set
from siamese_mrcnn.cli_inputs import (build_config, check_model_spec, init_weights,
                                      json_default, load_split_datasets, parse_eval_types,
                                      run_names)

logger = logging.getLogger(__name__)


def add_report_parser(sub, common: argparse.ArgumentParser) -> None:
    """The report subcommand, with the shared options of ``common``."""
    report = sub.add_parser(
        "report", parents=[common], help="the paper's Table 1 and Table 2",
        description="Evaluates background / one-shot / random boxes (and k-shot) for each "
                    "split's model, boxes and masks, and writes Table 1- and Table 2-shaped "
                    "Markdown and JSON (AP50, mean and 95% interval, per split and their "
                    "mean), plus the confusion matrix and clutter figures of one split.")
    report.add_argument("--dataset", required=True, help="COCO-format root")
    report.add_argument("--subset", default="val", help="subset to test on (default val)")
    report.add_argument("--models", default=None, metavar="S1.h5,S2.h5,...",
                        help="the split models, split 1 first (1 to 4 of them)")
    report.add_argument("--splits", type=int, default=None,
                        help="number of splits when --models is not given (all cells "
                             "read from --results)")
    report.add_argument("--full", default=None, help="a model trained on every class")
    report.add_argument("--runs", type=int, default=5, help="evaluation runs (default 5)")
    report.add_argument("--shots", default="1,5", help="k of the k-shot rows (default 1,5)")
    report.add_argument("--seed", type=int, default=0, help="seed of the first run")
    report.add_argument("--limit", type=int, default=0, help="first N images only (0: all)")
    report.add_argument("--eval-type", default="bbox,segm", help="bbox, segm or bbox,segm")
    report.add_argument("--results", default=None,
                        help="a folder of cell results (<cell>.json) to use instead of "
                             "evaluating them")
    report.add_argument("--figures-split", default="1",
                        help="split whose confusion matrix and AP50-by-instances figures "
                             "are drawn (needs its model; 0: none)")
    report.add_argument("--output", required=True, help="the report's folder")
    report.add_argument("--quiet", action="store_true", help="no progress bars")
    report.set_defaults(func=cmd_report)


def _parse_args(args) -> tuple:
    """(models by split, splits, shots, eval types); CLIError for a bad value."""
    models = [m for m in (args.models or "").split(",") if m]
    if len(models) > 4:
        raise CLIError(f"--models: at most 4 split models, got {len(models)}")
    count = len(models) or args.splits
    if not count or not 1 <= count <= 4:
        raise CLIError("give --models S1.h5[,S2.h5,...] (or --splits N with --results)")
    try:
        shots = sorted({int(k) for k in args.shots.split(",") if k.strip()} | {1})
    except ValueError as error:
        raise CLIError(f"--shots expects numbers such as 1,5, got {args.shots!r}") from error
    if shots[0] < 1:
        raise CLIError(f"--shots must be >= 1, got {args.shots!r}")
    if args.runs < 1 or args.limit < 0 or args.seed < 0:
        raise CLIError(f"--runs must be >= 1, --limit >= 0 and --seed >= 0, got "
                       f"{args.runs}, {args.limit} and {args.seed}")
    for model in models:
        check_model_spec(model, "--models")
    if args.full:
        check_model_spec(args.full, "--full")
    splits = [str(i + 1) for i in range(count)]
    return dict(zip(splits, models)), splits, shots, parse_eval_types(args.eval_type)


def _read_results(folders: list, names: list) -> dict:
    from siamese_mrcnn.report import result_problem

    results = {}
    for folder in folders:
        for name in names:
            path = os.path.join(folder, f"{name}.json")
            if name in results or not os.path.isfile(path):
                continue
            try:
                with open(path, encoding="utf-8") as f:
                    results[name] = json.load(f)
            except (json.JSONDecodeError, UnicodeDecodeError) as error:
                raise CLIError(f"{path}: corrupt JSON ({error})") from error
            problem = result_problem(results[name])
            if problem:
                raise CLIError(f"{path}: {problem}")
    return results


def cmd_report(args) -> dict:
    from siamese_mrcnn.analysis import save_json
    from siamese_mrcnn.coco import get_class_split
    from siamese_mrcnn.report import build_tables, markdown, report_cells, write_tables

    overrides = parse_set(args.set)
    models, splits, shots, eval_types = _parse_args(args)
    check_output(args.output, "--output")
    if args.results and not os.path.isdir(args.results):
        raise CLIError(f"--results {args.results}: expected a folder of cell results, "
                       "found none")
    cells = report_cells(splits, shots, full=bool(args.full))
    cell_dir = os.path.join(args.output, "cells")
    results = _read_results([cell_dir] + ([args.results] if args.results else []),
                            [c.name for c in cells])
    todo = [c for c in cells if c.name not in results]
    missing = sorted({c.split for c in todo} - set(models) - ({"full"} if args.full else set()))
    if missing:
        raise CLIError(f"no result and no model for split(s) {missing}: give --models, or "
                       "the cells' results with --results")
    draw_figures = args.figures_split != "0" and args.figures_split in models
    dataset = coco = None
    if todo or draw_figures:  # every cell read from --results needs no data set
        [(dataset, coco)], _, _ = load_split_datasets(args.dataset, args.year, "1", 0,
                                                      subset=args.subset)
    os.makedirs(cell_dir, exist_ok=True)
    from siamese_mrcnn.runs import run_evaluation

    groups: dict = {}
    for cell in todo:
        groups.setdefault((cell.split, cell.shots), []).append(cell)
    for (split, k), group in groups.items():
        model = _model(args, overrides, split, k, models.get(split, args.full),
                       "--models" if split in models else "--full")
        for cell in group:
            one_shot, background = get_class_split(split, dataset.num_classes - 1)
            classes = {"one-shot": one_shot, "background": background,
                       "all": np.arange(1, dataset.num_classes)}[cell.classes]
            dataset.set_active_classes(classes)
            logger.info("report: %s", cell.name)
            summary = run_evaluation(model, dataset, coco, runs=args.runs, seed=args.seed,
                                     eval_type=eval_types, limit=args.limit,
                                     random_detections=cell.random,
                                     verbose=0 if args.quiet else 1)
            results[cell.name] = dict(summary.to_dict(), meta={
                "split": split, "classes": cell.classes, "shots": k,
                "random_baseline": cell.random, "model": models.get(split, args.full)})
            save_json(results[cell.name], os.path.join(cell_dir, f"{cell.name}.json"),
                      default=json_default)
    try:
        tables = build_tables(results, splits, shots, full=bool(args.full))
    except ValueError as error:
        raise CLIError(str(error)) from error
    paths = write_tables(tables, splits, args.output)
    figures = {}
    if draw_figures:
        figures = _figures(args, overrides, dataset, coco, eval_types,
                           models[args.figures_split])
    texts = markdown(tables, splits)
    print("Table 2\n" + texts["table2"] + "\nTable 1\n" + texts["table1"])
    print(f"report: {args.output} ({len(todo)} cell(s) evaluated, "
          f"{len(cells) - len(todo)} read)")
    return {"tables": tables, "paths": paths, "figures": figures, "evaluated": len(todo)}


def _model(args, overrides: dict, split: str, shots: int, weights: str,
           option: str = "--models"):
    from siamese_mrcnn.model import SiameseMaskRCNN

    config = build_config(args.config, overrides, evaluation=True, NUM_TARGETS=shots,
                          **run_names(args.config, split))
    model = SiameseMaskRCNN("inference", config, args.logs)
    init_weights(model, weights, option=option)
    return model


def _figures(args, overrides, dataset, coco, eval_types, weights) -> dict:
    """The confusion matrix (Fig. 7) and AP50 by instances per image (Fig. 8) of the
    one-shot classes of --figures-split, under OUT/figures_s{split}/."""
    from siamese_mrcnn.analysis import (ap50_by_instance_count, confusion_matrix,
                                        write_confusion, write_instance_count)
    from siamese_mrcnn.coco import get_class_split
    from siamese_mrcnn.protocol import evaluate_protocol

    split = args.figures_split
    out = os.path.join(args.output, f"figures_s{split}")
    os.makedirs(out, exist_ok=True)
    model = _model(args, overrides, split, 1, weights)
    one_shot, _ = get_class_split(split, dataset.num_classes - 1)
    dataset.set_active_classes(one_shot)
    verbose = 0 if args.quiet else 1
    confusion = confusion_matrix(model, dataset, coco, class_ids=one_shot,
                                 eval_type=eval_types, limit=args.limit, seed=args.seed,
                                 verbose=verbose)
    paths = write_confusion(confusion, out)
    evaluation = evaluate_protocol(model, dataset, coco, eval_type=eval_types,
                                   limit=args.limit, seed=args.seed, verbose=0)
    paths.update(write_instance_count(ap50_by_instance_count(evaluation, coco), out))
    return paths
