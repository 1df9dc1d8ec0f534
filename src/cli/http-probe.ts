import http from "node:http";
import https from "node:https";
import { NoAnswerError } from "./rpc.js";
import type { Target } from "./target.js";

export interface ProbeResult {
  status: number;
  /** The media type of the answer, without parameters ("" when none). */
  contentType: string;
  body: string;
}

const MAX_BODY = 256 * 1024;

/** GET a plain HTTP path (e.g. /health) with a total timeout (then NoAnswerError) and a 256 KiB body cap. */
export function httpGet(target: Target, path: string, timeoutMs: number): Promise<ProbeResult> {
  return new Promise((resolve, reject) => {
    const mod = target.tls ? https : http;
    const req = mod.request(
      {
        host: target.host.replace(/^\[|\]$/g, ""),
        port: target.port,
        path,
        method: "GET",
        headers: { accept: "application/json" },
        ...(target.ca ? { ca: target.ca } : {}),
        ...(target.servername ? { servername: target.servername } : {}),
      },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on("data", (chunk: Buffer) => {
          size += chunk.length;
          if (size <= MAX_BODY) chunks.push(chunk);
        });
        res.on("end", () => {
          clearTimeout(timer);
          resolve({
            status: res.statusCode ?? 0,
            contentType: (res.headers["content-type"] ?? "").split(";")[0]!.trim(),
            body: Buffer.concat(chunks).toString("utf8"),
          });
        });
        res.on("error", reject);
      },
    );
    const timer = setTimeout(() => req.destroy(new NoAnswerError(timeoutMs)), timeoutMs);
    req.on("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    req.end();
  });
}
