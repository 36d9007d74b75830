"""A tiny name -> object registry, so configs select attacks, datasets and variants by name."""

from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
  """Maps names to objects; an unknown name is an error that lists the known ones."""

  def __init__(self, kind: str):
    self.kind = kind
    self._entries: dict[str, T] = {}

  def register(self, name: str) -> Callable[[T], T]:
    def decorator(obj: T) -> T:
      if name in self._entries:
        raise ValueError(f"{self.kind} {name!r} is registered twice.")
      self._entries[name] = obj
      return obj

    return decorator

  def get(self, name: str, field: str | None = None) -> T:
    if name not in self._entries:
      where = f" (config field {field})" if field else ""
      raise ValueError(
          f"Unknown {self.kind} {name!r}{where}; known: {', '.join(sorted(self._entries))}."
      )
    return self._entries[name]

  def names(self) -> list[str]:
    return sorted(self._entries)

  def __contains__(self, name: object) -> bool:
    return name in self._entries

  def __iter__(self) -> Iterator[str]:
    return iter(self.names())
