"""Template helpers of the lifecycle pages."""

from django import template

register = template.Library()


@register.filter
def get_item(mapping: dict, key: str):
    """`mapping|get_item:key`: a dictionary lookup with a variable key."""
    return mapping.get(key)
