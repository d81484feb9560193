// Port of Math-Verify 0.9's parser.py (MIT): the extraction regexes (verbatim), their
// priorities, "rightmost match first" within a priority, and extract_latex / extract_expr.
// parse() and verify() of math_verify.h live here; comparison is mv_compare's.
#include <algorithm>
#include <chrono>
#include <memory>
#include <set>

#include "math_verify.h"
#include "mv_eval.h"
#include "mv_normalize.h"
#include "mv_parse.h"
#include "mv_regex.h"

namespace mv {
namespace {

std::string env_pattern(const std::string& pre, bool boxed) {
  std::string pct = "(?P<" + pre + R"(percent>(?:\\?%|[Pp]ercent|[Pp]ercentage|[Pp]ct)))";
  std::string dd = R"((?:[^$]|\$(?!\$)))", db = R"((?:[^\\]|\\(?!\])))", id = R"((?:\\[$]|[^\n$]))",
              ip = R"((?:[^\\\n]|\\(?!\))))", ib = R"([^\n\]\[])";
  auto wrap = [&](const std::string& x) { return boxed ? x + R"(*?\\boxed{)" + x + "+?}" + x + "*?" : x + "+?"; };
  std::vector<std::string> pats = {
      R"((?<!\\)\$\$(?P<)" + pre + "latexDisplayDollar>" + wrap(dd) + R"()(?<!\\)\$\$)",
      R"((?<!\\)\\\[(?P<)" + pre + "latexDisplayBracket>" + wrap(db) + R"()(?<!\\)\\\])",
      R"((?<!\\|\d)\$(?P<)" + pre + "latexInlineDollar>" + wrap(id) + R"()(?<!\\)\$)",
      R"((?<!\\)\\\((?P<)" + pre + "latexInlineParenthesis>" + wrap(ip) + R"()(?<!\\)\\\))",
      R"(\s\[(?P<)" + pre + "latexInlineBracket>" + wrap(ib) + R"()\]\s)"};
  if (!boxed) pats.push_back("(?P<" + pre + R"(latexFraction>-?\\frac{-?\d+(?:[.,]\d+)?}{-?\d+(?:[.,]\d+)?}))");
  std::string alts;
  for (const auto& p : pats) alts += (alts.empty() ? "" : "|") + p;
  return "(?:(?:" + alts + R"()\s*)" + pct + "?)";
}

struct Pattern {
  std::unique_ptr<Regex> re;
  int priority;
  bool latex;
};

std::vector<Pattern> latex_patterns(int boxed_priority) {
  std::string next;
  for (int i = 1; i <= 5; ++i) next += R"((?:\s*(?:,?and|,?or|,)\s*)" + env_pattern("next" + std::to_string(i) + "_", false) + ")?";
  std::string L = "(?:" + env_pattern("first_", false) + next + ")";
  std::vector<std::pair<std::string, int>> res = {{R"((?i:final answer is)\:?\s*)" + L + R"(\.?\s?I hope)", 0},
                                                  {R"((?i:final answer.{0,100}?)\s+is\:?\s*)" + L, 50},
                                                  {R"((?i:answer):.{0,50}?)" + L, 100},
                                                  {R"((?i:answer).{0,50}?)" + L, 200},
                                                  {L, 300}};
  if (boxed_priority >= 0) {
    std::string b = env_pattern("first_", true);
    for (int i = 1; i <= 5; ++i) b += R"(\s*(?:\s*(?:,?and|,?or|,)\s*)" + env_pattern("next" + std::to_string(i) + "_", true) + ")?";
    res.push_back({b, boxed_priority});
    res.push_back({R"((?P<first_latexBoxed>\\boxed{.+}))", boxed_priority});
  }
  std::vector<Pattern> out;
  for (auto& [p, pr] : res) out.push_back({std::make_unique<Regex>(p, PCRE2_DOTALL), pr, true});
  return out;
}

std::vector<Pattern> expr_patterns() {
  std::string number = R"((?<!\d)(?:(?P<integer1>-?[1-9]\d{0,2}(?:[ ,]\d{3})+)(?P<decimal1>\.\d+)?|)"
                       R"((?P<integer2>-?\d+)(?P<decimal2>[.,]\d+)|(?P<decimal3>\.\d+)|(?P<integer3>-?\d+)))"
                       R"((?P<percent>\s*(?:%|[Pp]ercent|\s*[Pp]ercentage|\s*[Pp]ct))?)";
  std::string ops = R"(\+\-\*\×\/\^\(\)\÷)";
  std::string all = R"([\d\.\s)" + ops + "]";
  std::string expr = R"((?P<expr>-?\(?-?\d)" + all + "*[" + ops + "]" + all + R"(+\)?))";
  std::string currency = R"(\$€£¥₹₽₪₩₫฿₡₢₣₤₥₦₧₨₩₪₫₭₮₯₰₱₲₳₴₵₶₷₸₹₺₻₼₽₾₿)";
  std::string prefix = R"((?:^|\s|\=)(?:\*\*)?)", suffix = R"((?:\*\*)?(?:\.|,|:|\s|\)|\$|$))";
  std::string with_anchors = "(?:" + prefix + expr + suffix + ")";
  std::string number_anchors = "(?:" + prefix + "[" + currency + "]?" + number + ")";
  std::string either = "(?:" + with_anchors + "|" + number_anchors + ")";
  std::vector<std::pair<std::string, int>> res = {
      {R"((?i:final answer is)\:?\s*)" + either + R"(\.?\s?I hope)", 0},
      {R"((?i:final answer.{0,100}?)\s+is\:?)" + either, 50},
      {R"((?i:answer):(?:.{0,100}=\s*|.{0,50}?))" + either + R"((?!\s*=))", 100},
      {R"((?i:answer)(?:.{0,100}=\s*|.{0,50}?))" + either + R"((?!\s*=))", 200},
      {with_anchors, 300},
      {number_anchors, 300}};
  std::vector<Pattern> out;
  for (auto& [p, pr] : res) out.push_back({std::make_unique<Regex>(p), pr, false});
  return out;
}

const std::vector<Pattern>& patterns(bool latex, int boxed_priority) {
  static const std::vector<Pattern> l0 = latex_patterns(0), l50 = latex_patterns(50), lno = latex_patterns(-1),
                                    ex = expr_patterns();
  if (!latex) return ex;
  return boxed_priority == 0 ? l0 : boxed_priority < 0 ? lno : l50;
}

// extract_latex
Parsed extract_latex(const Match& m) {
  std::vector<std::pair<std::string, std::string>> groups;  // (value, name)
  for (const std::string pre : {"first_", "next1_", "next2_", "next3_", "next4_", "next5_"})
    for (const auto& [name, g] : m.re->names())
      if (name.rfind(pre + "latex", 0) == 0 && m.has(g) && m.groups[g].second > m.groups[g].first) {
        groups.emplace_back(m.str(g), name);
        break;
      }
  if (groups.empty()) return {};
  std::vector<P> exprs;
  std::vector<std::string> strs;
  for (const auto& [latex, name] : groups) {
    std::string pre = name.substr(0, name.find('_'));
    bool pct = !m.named(pre + "_percent").empty();
    std::string norm = normalize_latex(latex, name.substr(name.find('_') + 1) == "latexBoxed" ? BoxedMode::kLast : BoxedMode::kAll);
    strs.push_back(norm);
    try {
      P e = parse_latex_with_fallback(norm);
      exprs.push_back(pct ? make(K::kPct, {e}) : e);
    } catch (const ParseError&) {
      exprs.push_back(nullptr);
    } catch (const EvalError&) {
      exprs.push_back(nullptr);
    }
  }
  bool all = std::all_of(exprs.begin(), exprs.end(), [](const P& p) { return p != nullptr; });
  if (exprs.size() > 1 && all) {
    std::vector<P> items;
    std::string joined;
    for (size_t i = 0; i < exprs.size(); ++i) {
      if (exprs[i]->k == K::kSet) items.insert(items.end(), exprs[i]->kids.begin(), exprs[i]->kids.end());
      else items.push_back(exprs[i]);
      joined += (i ? " and " : "") + strs[i];
    }
    std::vector<P> uniq;
    std::set<std::string> seen;
    for (auto& x : items)
      if (seen.insert(to_string(x)).second) uniq.push_back(x);
    return {make(K::kSet, uniq), joined};
  }
  return {exprs[0], strs[0]};
}

// extract_expr
Parsed extract_expr(const Match& m) {
  std::string integer, decimal;
  for (const char* g : {"integer1", "integer2", "integer3"})
    if (integer.empty()) integer = m.named(g);
  for (const char* g : {"decimal1", "decimal2", "decimal3"})
    if (decimal.empty()) decimal = m.named(g);
  bool pct = !m.named("percent").empty();
  if (!integer.empty() || !decimal.empty()) {
    std::string i;
    for (char c : integer)
      if (c != ',' && c != ' ') i += c;
    size_t z = i.find_first_not_of('0');
    i = z == std::string::npos ? "" : i.substr(z);
    if (i.empty()) i = "0";
    std::replace(decimal.begin(), decimal.end(), ',', '.');
    std::string s = i + decimal;
    P n = num(s, !decimal.empty());
    return {pct ? make(K::kPct, {n}) : n, s};
  }
  std::string expr = m.named("expr");
  if (expr.empty()) return {};
  try {
    return {parse_plain_expr(expr), expr};
  } catch (const ParseError&) {
    return {nullptr, expr};
  }
}

// Sums and products of matrix literals become one matrix (SymPy's doit on MatAdd/MatMul).
P fold_matrices(const P& p) {
  if (p->kids.empty()) return p;
  auto n = std::make_shared<Node>(*p);
  for (auto& k : n->kids) k = fold_matrices(k);
  bool all = std::all_of(n->kids.begin(), n->kids.end(), [](const P& k) { return k->k == K::kMatrix; });
  if (!all || (n->k != K::kAdd && n->k != K::kMul)) return n;
  P acc = n->kids[0];
  for (size_t i = 1; i < n->kids.size(); ++i) {
    const P& b = n->kids[i];
    auto r = std::make_shared<Node>(*acc);
    if (n->k == K::kAdd) {
      if (acc->rows != b->rows || acc->cols != b->cols) return n;
      for (size_t j = 0; j < r->kids.size(); ++j) r->kids[j] = add(acc->kids[j], b->kids[j]);
    } else {
      if (acc->cols != b->rows) return n;
      r->cols = b->cols;
      r->kids.clear();
      for (size_t x = 0; x < acc->rows; ++x)
        for (size_t y = 0; y < b->cols; ++y) {
          P s = mul(acc->kids[x * acc->cols], b->kids[y]);
          for (size_t z = 1; z < acc->cols; ++z) s = add(s, mul(acc->kids[x * acc->cols + z], b->kids[z * b->cols + y]));
          r->kids.push_back(s);
        }
    }
    acc = r;
  }
  return acc;
}

struct Budget {  // sets this thread's deadline for the scope unless an outer scope did
  bool owner = false;
  explicit Budget(double seconds) {
    if (seconds > 0 && deadline().at == std::chrono::steady_clock::time_point::max()) {
      deadline().at = std::chrono::steady_clock::now() + std::chrono::microseconds(int64_t(seconds * 1e6));
      owner = true;
    }
  }
  ~Budget() {
    if (owner) deadline().at = std::chrono::steady_clock::time_point::max();
  }
};

}  // namespace

Parsed parse(const std::string& text, const ParseOptions& opts) {
  struct Cand {
    const Pattern* pat;
    Match m;
  };
  std::vector<const Pattern*> all;
  if (opts.latex)
    for (const auto& p : patterns(true, opts.boxed_priority)) all.push_back(&p);
  if (opts.expr)
    for (const auto& p : patterns(false, 0)) all.push_back(&p);
  std::stable_sort(all.begin(), all.end(), [](const Pattern* a, const Pattern* b) { return a->priority < b->priority; });
  std::string fallback;
  bool have_fallback = false;
  for (size_t i = 0; i < all.size();) {
    size_t j = i;
    std::vector<Cand> cands;
    for (; j < all.size() && all[j]->priority == all[i]->priority; ++j)
      for (auto& m : all[j]->re->find_all(text)) cands.push_back({all[j], std::move(m)});
    std::stable_sort(cands.begin(), cands.end(), [](const Cand& a, const Cand& b) {
      return a.m.end() != b.m.end() ? a.m.end() > b.m.end() : a.m.start() < b.m.start();
    });
    for (const auto& c : cands) {
      deadline().check();
      Parsed r = c.pat->latex ? extract_latex(c.m) : extract_expr(c.m);
      if (!r.text.empty() && !have_fallback) {
        fallback = r.text;
        have_fallback = true;
      }
      if (r.expr) return {fold_matrices(r.expr), fallback};
    }
    i = j;
  }
  return {nullptr, fallback};
}

bool verify(const Parsed& gold, const Parsed& pred, const CompareOptions& opts) {
  if (gold.expr && pred.expr) {
    try {
      if (expr_eq(gold.expr, pred.expr, opts)) return true;
    } catch (const EvalError&) {
    } catch (const ParseError&) {
    }
  }
  auto strip = [](const std::string& s) {
    size_t b = s.find_first_not_of(" \t\n\r\f\v"), e = s.find_last_not_of(" \t\n\r\f\v");
    return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
  };
  std::string g = strip(gold.text), p = strip(pred.text);
  return !g.empty() && g == p;
}

Verdict verify_text(const std::string& gold, const std::string& pred, const ParseOptions& gold_opts,
                    const ParseOptions& pred_opts, const CompareOptions& cmp, double budget_s) {
  Verdict v;
  Budget budget(budget_s);
  try {
    Parsed g = parse(gold, gold_opts);
    Parsed p = parse(pred, pred_opts);
    v.extracted = p.text;
    if (!g.expr && g.text.empty()) v.error = "no answer found in the gold";
    else if (!p.expr && p.text.empty()) v.error = "no answer found in the prediction";
    v.equal = verify(g, p, cmp);
  } catch (const Timeout& e) {
    v.timed_out = true;
    v.error = e.what();
  } catch (const std::exception& e) {  // never throw on model output
    v.error = e.what();
  }
  return v;
}

Verdict verify_answer(const std::string& gold_answer, const std::string& completion, double budget_s) {
  return verify_text("\\boxed{" + gold_answer + "}", completion, ParseOptions{}, ParseOptions{}, CompareOptions{}, budget_s);
}

}  // namespace mv
