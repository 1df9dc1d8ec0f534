import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";

/** What the interceptor reports: the start of a call, then (once) its code. */
export type RpcObserver = (service: string, method: string, protocol: string, unary: boolean) => (code: string) => void;

/** The protocol of a request, from its content type (as Prometheus labels: grpc, grpc_web, connect). */
function protocolOf(contentType: string | null): string {
  if (contentType === null) return "connect"; // a Connect GET carries none
  if (contentType.startsWith("application/grpc-web")) return "grpc_web";
  if (contentType.startsWith("application/grpc")) return "grpc";
  return "connect";
}

const codeName = (err: unknown) =>
  Code[ConnectError.from(err).code]?.replace(/[A-Z]/g, (c, i: number) => (i === 0 ? c.toLowerCase() : `_${c.toLowerCase()}`)) ?? "unknown";

/**
 * Times every call that reaches its handler and reports its code when it ends: a unary call when
 * it answers, a stream when its last message is sent or it fails (the caller going away counts
 * as `canceled`). Calls refused before the handler (bad token, malformed body) are counted where
 * they are refused.
 */
export function rpcMetricsInterceptor(observe: RpcObserver): Interceptor {
  return (next) => async (req) => {
    const unary = req.method.methodKind === "unary";
    const done = observe(req.service.typeName, req.method.name, protocolOf(req.header.get("content-type")), unary);
    let res;
    try {
      res = await next(req);
    } catch (err) {
      done(codeName(err));
      throw err;
    }
    if (!res.stream) {
      done("ok");
      return res;
    }
    const messages = res.message;
    return {
      ...res,
      message: (async function* () {
        let code = "canceled";
        try {
          yield* messages;
          code = "ok";
        } catch (err) {
          code = codeName(err);
          throw err;
        } finally {
          done(code);
        }
      })(),
    };
  };
}
