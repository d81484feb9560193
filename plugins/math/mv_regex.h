// The verifier's regexes: the plugins' PCRE2 wrapper (plugin_common/regex.h) under mv::.
#pragma once

#include "plugin_common/regex.h"

namespace mv {
using warmup::common::Match;
using warmup::common::Regex;
}  // namespace mv
