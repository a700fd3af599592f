"""Renderers of a Plan: human text, JSON, markdown. They read the model; they never change it."""

from .human import render_human
from .jsonplan import plan_from_json, plan_to_json
from .markdown import render_markdown

__all__ = ["plan_from_json", "plan_to_json", "render_human", "render_markdown"]
