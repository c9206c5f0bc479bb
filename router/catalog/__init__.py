"""The catalog: what users write (YAML) and the immutable view the program reads."""

from router.catalog.loader import CatalogError, LoadResult, Problem, load_catalog, parse_catalog
from router.catalog.model import Catalog, Container, Model, Routing

__all__ = ["Catalog", "CatalogError", "Container", "LoadResult", "Model", "Problem", "Routing", "load_catalog", "parse_catalog"]
