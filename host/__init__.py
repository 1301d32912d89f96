"""The host side of gridcast: music in, beat maps and bundles out, and the ``gridcast``
command (``cli``). See the README's layout table for what each subpackage holds."""
