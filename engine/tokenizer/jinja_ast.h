// The syntax tree of a parsed Jinja template: statements (text, output, if, for, set, macro,
// call, filter, with, break/continue) holding expressions. The parser builds it once; the
// renderer only reads it, so one tree serves any number of concurrent renders.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "engine/tokenizer/jinja_builtins.h"
#include "engine/tokenizer/jinja_value.h"

namespace mamba::tokenizer::jinja {

enum class CompareOp : uint8_t { kEq, kNe, kLt, kLe, kGt, kGe, kIn, kNotIn };

struct Expr {
  enum class Type : uint8_t {
    kLiteral,   // `literal`
    kName,      // `name`
    kList,      // operands: the items
    kTuple,     // operands: the items
    kDict,      // operands: key, value, key, value, ...
    kGetAttr,   // operands[0].name
    kGetItem,   // operands[0][operands[1]]
    kSlice,     // operands[0][operands[1]:operands[2]:operands[3]], each bound may be null
    kCall,      // operands[0](operands[1..], kwargs)
    kFilter,    // operands[0] | name(operands[1..], kwargs); operands[0] null in {% filter %}
    kTest,      // operands[0] is [not] name(operands[1..], kwargs)
    kNeg,       // -operands[0]
    kPos,       // +operands[0]
    kNot,       // not operands[0]
    kBinary,    // operands[0] `op` operands[1]
    kAnd,       // operands[0] and operands[1]
    kOr,        // operands[0] or operands[1]
    kCompare,   // operands[0] compare_ops[0] operands[1] compare_ops[1] operands[2] ...
    kConcat,    // operands joined with ~
    kCondExpr,  // operands[1] if operands[0] else operands[2] (null: undefined)
  };
  Type type = Type::kLiteral;
  int line = 1;
  Value literal;
  std::string name;
  BinaryOp op = BinaryOp::kAdd;
  std::vector<CompareOp> compare_ops;
  bool negated = false;       // kTest: "is not"
  FilterFn filter = nullptr;  // kFilter, resolved when parsing
  TestFn test = nullptr;      // kTest, resolved when parsing
  std::vector<std::unique_ptr<Expr>> operands;
  std::vector<std::pair<std::string, std::unique_ptr<Expr>>> kwargs;
};
using ExprPtr = std::unique_ptr<Expr>;

// What a set or for assigns to: a name, or `name.attr` of a namespace.
struct Target {
  std::string name;
  std::string attr;  // empty for a plain name
};

// A macro or caller parameter, with its default.
struct Param {
  std::string name;
  ExprPtr default_value;  // null: none
};

struct Stmt;
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

struct IfBranch {
  ExprPtr condition;  // null for else
  Body body;
};

struct Stmt {
  enum class Type : uint8_t {
    kText,         // `text`
    kOutput,       // {{ expr }}
    kIf,           // branches
    kFor,          // for targets in expr [if condition]: body, else_body
    kSet,          // set targets = expr
    kSetBlock,     // set targets[0] [| filter] %} body {% endset
    kMacro,        // macro name(params): body
    kCallBlock,    // call(params) expr: body (the caller)
    kFilterBlock,  // filter `filter` (a kFilter chain whose innermost input is null): body
    kWith,         // with targets[i] = values[i]: body
    kScope,        // a block that only groups its body ({% generation %})
    kBreak,
    kContinue,
  };
  Type type = Type::kText;
  int line = 1;
  std::string text;  // kText; the macro's name for kMacro
  ExprPtr expr;
  ExprPtr condition;  // kFor: the loop filter
  ExprPtr filter;     // kSetBlock, kFilterBlock
  std::vector<Target> targets;
  bool unpack = false;  // the targets were written as a tuple
  std::vector<ExprPtr> values;
  std::vector<IfBranch> branches;
  Body body;
  Body else_body;
  std::vector<Param> params;
  // Macros: whether the body reads `varargs`, `kwargs` or `caller` (jinja2 accepts extra
  // positional or keyword arguments only then).
  bool uses_varargs = false;
  bool uses_kwargs = false;
  bool uses_caller = false;
};

struct Program {
  Body body;
};

}  // namespace mamba::tokenizer::jinja
