"""The HIL scenarios (pytest hil): not part of the gridcast.hil package, not in the wheel."""
