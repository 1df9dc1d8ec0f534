import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { tempDir } from "./cara.js";

/** A one-day self-signed P-256 certificate for 127.0.0.1 and localhost, made with openssl in a temp dir. */
export async function selfSignedCert(): Promise<{ cert: string; key: string }> {
  const dir = await tempDir();
  const cert = join(dir, "cert.pem");
  const key = join(dir, "key.pem");
  execFileSync(
    "openssl",
    [
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:prime256v1",
      "-nodes",
      "-days",
      "1",
      "-subj",
      "/CN=localhost",
      "-addext",
      "subjectAltName=IP:127.0.0.1,DNS:localhost",
      "-keyout",
      key,
      "-out",
      cert,
    ],
    { stdio: "ignore" },
  );
  return { cert, key };
}
