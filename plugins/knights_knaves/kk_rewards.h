// The K&K rewards registered by the knights_knaves library, beside its task and teacher:
// kk_paper (the paper's, kk_paper.cpp) and kk_logic_rl (Logic-RL's, kk_logic_rl.cpp).
#pragma once

#include "warmup/abi.h"

warmup_plugin_entry kk_paper_entry();
warmup_plugin_entry kk_logic_rl_entry();
