import { ConnectError, type Interceptor } from "@connectrpc/connect";
import { reasonForCode, withFacts } from "../wire/error-details.js";

/** The error with this server's ErrorInfo: its own if it has one, else a reason named after its code. */
function withErrorInfo(err: unknown): ConnectError {
  const e = ConnectError.from(err);
  return withFacts(e, { reason: reasonForCode(e.code) });
}

/**
 * Every error a handler raises (unary, or mid-stream) leaves with google.rpc.ErrorInfo, so a
 * client can always tell a server's answer from a local failure and switch on a stable reason.
 * Services set specific reasons; this covers the rest (e.g. a method not implemented yet).
 */
export function errorInfoInterceptor(): Interceptor {
  return (next) => async (req) => {
    let res;
    try {
      res = await next(req);
    } catch (err) {
      throw withErrorInfo(err);
    }
    if (!res.stream) return res;
    const messages = res.message;
    return {
      ...res,
      message: (async function* () {
        try {
          yield* messages;
        } catch (err) {
          throw withErrorInfo(err);
        }
      })(),
    };
  };
}
