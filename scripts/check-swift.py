"""Checks the hand-written Swift (ios-sample/, the Swift scenario) as far as a machine without a
Swift toolchain can: every file parses (tree-sitter-swift), and every binding symbol it uses
exists in the generated Curbside.swift with the argument labels it is called with — methods of
the store, records' initialisers, top-level functions, error cases and types. Nothing here is
compiled or run; the README says so.

usage: check-swift.py GENERATED_SWIFT FILE_OR_DIR..."""

import re
import sys
from pathlib import Path

import tree_sitter_swift
from tree_sitter import Language, Parser

PARSER = Parser(Language(tree_sitter_swift.language()))

# Types of Swift, Foundation, SwiftUI and the other Apple frameworks the sample uses. A binding
# type misspelled is in none of these and fails.
PLATFORM = set("""
Any AnyObject App AsyncStream BGProcessingTask BGTaskScheduler BGProcessingTaskRequest Binding
Bool Button CLLocation CLLocationCoordinate2D CLLocationManager CLLocationManagerDelegate Circle
Context Coordinator Data Date DatePicker DispatchQueue DispatchSemaphore Double Error FileManager
ForEach Form HStack ISO8601DateFormatter Identifiable Int Label List MKCoordinateRegion
MKCoordinateSpan Map Menu NSLock NSObject ObservableObject PHPickerConfiguration PHPickerResult
PHPickerViewController PHPickerViewControllerDelegate Picker ProcessInfo Scene Section Sendable
Spacer StateObject State String TabView Task Text TextField Toggle UIViewControllerRepresentable
URL UTType UInt32 UInt64 VStack View WindowGroup Void Published MainActor Toggle TimeInterval Package
""".split())

# Variables that hold a CurbsideStore in the sample and the scenario.
STORE_RECEIVERS = {"store", "self.store", "repo.store", "resident", "inspector", "neighbour", "self?.store"}


def params(text):
    """Argument labels of a Swift parameter list (external names; `_` for none)."""
    labels, depth, part = [], 0, ""
    for ch in text + ",":
        if ch in "([<":
            depth += 1
        elif ch in ")]>":
            depth -= 1
        if ch == "," and depth == 0:
            part = part.strip()
            if part:
                label = part.split(":")[0].strip().split()[0].strip("`")
                labels.append(label)
            part = ""
        else:
            part += ch
    return labels


def generated(path):
    # Doc comments sit inside parameter lists; `public` may end a line of its own.
    src = re.sub(r"/\*.*?\*/", "", Path(path).read_text(), flags=re.S)
    src = re.sub(r"^public\s*\n", "public ", src, flags=re.M)
    types = set(re.findall(r"^(?:public|open) (?:final )?(?:struct|enum|protocol|class) (\w+)", src, re.M))
    store_methods = {}
    block = re.search(r"public protocol CurbsideStoreProtocol.*?\n}\n", src, re.S).group(0)
    for name, args in re.findall(r"func `?(\w+)`?\((.*?)\)", block):
        store_methods[name] = params(args)
    store_methods["open"] = ["path"]
    functions = {name: params(args) for name, args in re.findall(r"^public func `?(\w+)`?\((.*?)\)", src, re.M)}
    inits = {}
    for name, body in re.findall(r"^public struct (\w+).*?\n(.*?)\n}\n", src, re.S | re.M):
        m = re.search(r"public init\((.*?)\)\s*{", body, re.S)
        if m:
            inits[name] = params(m.group(1))
    for cls in ("SyncCancel",):
        inits[cls] = []
    errors = {}
    for name, body in re.findall(r"^public enum (\w+): Swift.Error.*?\n(.*?)\n}\n", src, re.S | re.M):
        errors[name] = set(re.findall(r"^\s*case (\w+)\(", body, re.M))
    return types, store_methods, functions, inits, errors


def text(node, src):
    return src[node.start_byte:node.end_byte].decode()


def walk(node):
    yield node
    for child in node.children:
        yield from walk(child)


def labels_of(call, src):
    args = next((c for c in walk(call) if c.type == "value_arguments"), None)
    if args is None:
        return []
    out = []
    for arg in args.children:
        if arg.type != "value_argument":
            continue
        label = next((c for c in arg.children if c.type == "value_argument_label"), None)
        out.append(text(label, src) if label else "_")
    return out


def declarations(paths):
    """Types the checked files declare, and the methods they add to CurbsideStore."""
    declared, extensions = set(), set()
    for path in paths:
        src = Path(path).read_bytes()
        declare(PARSER.parse(src).root_node, src, declared, extensions)
    return declared, extensions


def declare(root, src, declared, extensions):
    for n in walk(root):
        if n.type in ("class_declaration", "protocol_declaration", "typealias_declaration"):
            name = n.child_by_field_name("name")
            if name is not None:
                declared.add(text(name, src))
                if text(n, src).startswith("extension CurbsideStore"):
                    extensions |= {text(f.child_by_field_name("name"), src) for f in walk(n)
                                   if f.type == "function_declaration" and f.child_by_field_name("name")}
        if n.type == "type_parameter":
            declared |= {text(c, src) for c in n.children if c.type == "type_identifier"}


def check(path, api, module, problems):
    types, store_methods, functions, inits, errors = api
    declared, extensions = module
    src = Path(path).read_bytes()
    tree = PARSER.parse(src)
    for node in walk(tree.root_node):
        if node.type == "ERROR" or node.is_missing:
            problems.append(f"{path}:{node.start_point[0] + 1}: does not parse: {text(node, src)[:60]!r}")

    def skipped(node):
        """Attributes (@main, @unchecked), nested types (X.Continuation), keywords."""
        parent = node.parent
        while parent is not None:
            if parent.type == "attribute":
                return True
            parent = parent.parent
        before = node.prev_sibling
        return (before is not None and text(before, src) == ".") or text(node, src) == "throws"

    for node in walk(tree.root_node):
        if node.type == "type_identifier" and not skipped(node):
            name = text(node, src)
            if name not in types and name not in declared and name not in PLATFORM:
                problems.append(f"{path}:{node.start_point[0] + 1}: unknown type {name}")
        if node.type == "call_expression":
            callee = node.children[0]
            line = node.start_point[0] + 1
            if callee.type == "navigation_expression":
                target = callee.child_by_field_name("target")
                suffix = callee.child_by_field_name("suffix")
                name = text(suffix, src).lstrip(".") if suffix else ""
                receiver = text(target, src) if target else ""
                if receiver in STORE_RECEIVERS or receiver == "CurbsideStore":
                    if name in extensions:
                        pass
                    elif name not in store_methods:
                        problems.append(f"{path}:{line}: CurbsideStore has no method {name}")
                    elif labels_of(node, src) != store_methods[name]:
                        problems.append(f"{path}:{line}: {name} takes ({', '.join(store_methods[name])}:), "
                                        f"called with ({', '.join(labels_of(node, src))}:)")
            elif callee.type == "simple_identifier":
                name = text(callee, src)
                used = labels_of(node, src)
                if name in inits:
                    it = iter(inits[name])
                    if not all(label in it for label in used):
                        problems.append(f"{path}:{line}: {name}({', '.join(used)}:) does not match "
                                        f"init({', '.join(inits[name])}:)")
                elif name in functions and used != functions[name]:
                    problems.append(f"{path}:{line}: {name} takes ({', '.join(functions[name])}:)")
        if node.type == "user_type" and node.next_sibling is not None and text(node.next_sibling, src) == ".":
            error = text(node, src)
            case = node.next_sibling.next_sibling
            if error in errors and case is not None and text(case, src) not in errors[error]:
                problems.append(f"{path}:{node.start_point[0] + 1}: {error} has no case {text(case, src)}")


def main():
    api = generated(sys.argv[1])
    files = []
    for arg in sys.argv[2:]:
        p = Path(arg)
        files += sorted(p.rglob("*.swift")) if p.is_dir() else [p]
    problems = []
    module = declarations(files)
    for f in files:
        check(f, api, module, problems)
    for p in problems:
        print(p)
    print(f"{len(files)} Swift files parsed and checked against the generated bindings, {len(problems)} problems")
    sys.exit(1 if problems else 0)


main()
