// The whole plugin SDK in one include. Plugins include only headers under warmup/.
#pragma once

#include "abi.h"
#include "algorithm.h"
#include "fingerprint.h"
#include "host.h"
#include "jsonl.h"
#include "options.h"
#include "plugin.h"
#include "reward.h"
#include "sft_data.h"
#include "task.h"
#include "teacher.h"
#include "types.h"
