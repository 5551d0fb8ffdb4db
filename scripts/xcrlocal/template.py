"""infra/template.yaml read the way CloudFormation reads it, for emulators that do not.

load_template parses the YAML with its short tags (!Ref, !Sub...) in their long JSON form;
Intrinsics evaluates the intrinsic functions against a deployed stack (or, for `Rules`,
against parameters alone); parameter_values and check_rules do what CloudFormation does
before it creates anything and moto skips: fill in defaults, refuse unknown parameters, and
check AllowedValues, AllowedPattern, Min/MaxValue and the template's `Rules`.

PyYAML is imported only inside load_template (see the package docstring).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable

from xcrlocal import ROOT, StackError

TEMPLATE = ROOT / "infra" / "template.yaml"

# AWS::NoValue: a property resolved to it is removed.
NO_VALUE = object()
_SUB_VAR = re.compile(r"\$\{([^}]*)\}")


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    """Parse a CloudFormation YAML template, short tags (!Ref, !Sub...) included.

    Short tags become their long JSON form ({"Fn::Sub": ...}). Timestamps are
    not resolved: CloudFormation reads `2012-10-17` as a string, so do we.
    """
    import yaml

    class CfnLoader(yaml.SafeLoader):
        pass

    CfnLoader.yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
        if isinstance(node, yaml.ScalarNode):
            value: Any = loader.construct_scalar(node)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        if suffix in ("Ref", "Condition"):
            return {suffix: value}
        if suffix == "GetAtt" and isinstance(value, str):
            value = value.split(".", 1)
        return {f"Fn::{suffix}": value}

    CfnLoader.add_multi_constructor("!", intrinsic)
    try:
        with open(path, encoding="utf-8") as handle:
            doc = yaml.load(handle, Loader=CfnLoader)  # noqa: S506 - SafeLoader subclass
    except FileNotFoundError as err:
        raise StackError(f"template not found: {path}") from err
    except yaml.YAMLError as err:
        raise StackError(f"cannot parse {path}: {err}") from err
    if not isinstance(doc, dict) or not isinstance(doc.get("Resources"), dict):
        raise StackError(f"{path} has no Resources section")
    return doc


class Intrinsics:
    """Evaluates CloudFormation intrinsic functions against a deployed stack.

    Enough of the language for real templates: Ref, Fn::GetAtt, Fn::Sub,
    Fn::Join, Fn::Select, Fn::Split, Fn::If, Fn::FindInMap, Fn::Base64 and the
    condition functions. Anything else fails loudly rather than guessing.
    """

    def __init__(
        self,
        template: dict[str, Any],
        parameters: dict[str, str],
        pseudo: dict[str, str],
        ref: Callable[[str], Any],
        getatt: Callable[[str, str], Any],
    ):
        self.template = template
        self.parameters = parameters
        self.pseudo = pseudo
        self._ref = ref
        self._getatt = getatt
        self._conditions: dict[str, bool] = {}

    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            try:
                expr = self.template["Conditions"][name]
            except KeyError as err:
                raise StackError(f"template: unknown condition {name!r}") from err
            self._conditions[name] = bool(self.resolve(expr))
        return self._conditions[name]

    def ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        return self._ref(name)

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            items = [self.resolve(v) for v in value]
            return [v for v in items if v is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (key, arg), = value.items()
            if key == "Ref":
                return self.ref(arg)
            if key == "Condition":
                return self.condition(arg)
            if key.startswith("Fn::"):
                return self._function(key[4:], arg)
        out = {}
        for key, item in value.items():
            resolved = self.resolve(item)
            if resolved is not NO_VALUE:
                out[key] = resolved
        return out

    def _function(self, name: str, arg: Any) -> Any:
        if name == "If":
            cond, if_true, if_false = arg
            return self.resolve(if_true if self.condition(cond) else if_false)
        if name == "GetAtt":
            logical, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
            return self._getatt(logical, attribute)
        if name == "Sub":
            return self._sub(arg)
        args = self.resolve(arg)
        if name == "Equals":
            return str(args[0]) == str(args[1])
        if name == "Contains":  # Rules: a value among a list
            return str(args[1]) in [str(v) for v in args[0]]
        if name == "Not":
            return not args[0]
        if name == "And":
            return all(args)
        if name == "Or":
            return any(args)
        if name == "Join":
            return str(args[0]).join(str(v) for v in args[1])
        if name == "Select":
            return args[1][int(args[0])]
        if name == "Split":
            return str(args[1]).split(str(args[0]))
        if name == "FindInMap":
            return self.template["Mappings"][args[0]][args[1]][args[2]]
        if name == "Base64":
            import base64

            return base64.b64encode(str(args).encode()).decode()
        raise StackError(f"template: Fn::{name} is not supported by scripts/stack.py")

    def _sub(self, arg: Any) -> str:
        if isinstance(arg, list):
            text, variables = arg[0], {k: self.resolve(v) for k, v in arg[1].items()}
        else:
            text, variables = arg, {}

        def one(match: re.Match[str]) -> str:
            expr = match.group(1)
            if expr.startswith("!"):  # ${!Literal} is written as ${Literal}
                return "${" + expr[1:] + "}"
            if expr in variables:
                return str(variables[expr])
            if "." in expr and not expr.startswith("AWS::"):
                logical, attribute = expr.split(".", 1)
                return str(self._getatt(logical, attribute))
            return str(self.ref(expr))

        return _SUB_VAR.sub(one, text)


def parameter_values(template: dict[str, Any], overrides: dict[str, str]) -> dict[str, str]:
    """The template's parameters with their defaults, overridden; unknown names refused."""
    declared = template.get("Parameters", {})
    unknown = set(overrides) - set(declared)
    if unknown:
        raise StackError(f"unknown template parameter(s): {', '.join(sorted(unknown))}")
    values = {name: str(spec.get("Default", "")) for name, spec in declared.items() if "Default" in spec}
    values.update(overrides)
    missing = sorted(set(declared) - set(values))
    if missing:
        raise StackError(f"template parameter(s) without a default need a value: {', '.join(missing)}")
    return values


def check_rules(template: dict[str, Any], parameters: dict[str, str], pseudo: dict[str, str] | None = None) -> list[str]:
    """Evaluate the template's `Rules` section offline; return the failed assertions.

    CloudFormation checks Rules before it creates anything; emulators do not
    (moto ignores the section), so deploy steps call this first. Also checks
    each parameter's AllowedValues / AllowedPattern / MinValue / MaxValue.
    """

    def no_resources(name: str) -> Any:
        raise StackError(f"template: a rule refers to {name!r}, which is not a parameter")

    def no_getatt(logical: str, attribute: str) -> Any:
        raise StackError(f"template: a rule uses !GetAtt {logical}.{attribute}")

    intrinsics = Intrinsics(template, parameters, dict(pseudo or {}), no_resources, no_getatt)
    problems = []
    for name, spec in template.get("Parameters", {}).items():
        value = parameters.get(name, "")
        allowed = spec.get("AllowedValues")
        if allowed is not None and str(value) not in [str(v) for v in allowed]:
            problems.append(f"{name}={value!r} is not one of {', '.join(str(v) for v in allowed)}")
        pattern = spec.get("AllowedPattern")
        if pattern is not None and spec.get("Type", "String") == "String" and not re.fullmatch(pattern, str(value)):
            described = spec.get("ConstraintDescription") or f"must match {pattern}"
            problems.append(f"{name}: {described}")
        if spec.get("Type") == "Number":
            try:
                number = float(value)
            except ValueError:
                problems.append(f"{name}={value!r} is not a number")
                continue
            if "MinValue" in spec and number < float(spec["MinValue"]):
                problems.append(f"{name}={value} is below its minimum {spec['MinValue']}")
            if "MaxValue" in spec and number > float(spec["MaxValue"]):
                problems.append(f"{name}={value} is above its maximum {spec['MaxValue']}")
    for rule_name, rule in template.get("Rules", {}).items():
        if "RuleCondition" in rule and not intrinsics.resolve(rule["RuleCondition"]):
            continue
        for assertion in rule.get("Assertions", []):
            if not intrinsics.resolve(assertion["Assert"]):
                problems.append(f"{rule_name}: {' '.join(str(assertion.get('AssertDescription', 'assertion failed')).split())}")
    return problems
