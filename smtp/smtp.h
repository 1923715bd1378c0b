// smtp/smtp.h — the SMTP client library's public header for the daemon: outcomes, options,
// transactions (types.h) and the libuv Session (session.h). The sans-IO Engine (engine.h), the
// reply parser (reply.h) and the body encoder (body_encoder.h) are public for tests and fuzzing.
#pragma once

#include "smtp/session.h"
#include "smtp/types.h"
