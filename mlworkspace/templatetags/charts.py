"""``{% plotly_js_url %}``: the hashed URL of plotly.js, for the chart loader (static/js/charts.js)."""

from django import template
from django.templatetags.static import static

from mlworkspace.staticfiles import plotly_static_path

register = template.Library()


@register.simple_tag
def plotly_js_url() -> str:
    return static(plotly_static_path())
