/** A listen() failure in words an operator can act on (the flag to change), or the error as is. */
export function describeListenError(err: unknown, bind: string, port: number): Error {
  switch ((err as NodeJS.ErrnoException).code) {
    case "EADDRINUSE":
      return new Error(`port ${port} on ${bind} is already in use (another server? pick one with --port)`);
    case "EACCES":
      return new Error(`not allowed to listen on ${bind}:${port} (ports below 1024 need privileges; pick another with --port)`);
    case "EADDRNOTAVAIL":
      return new Error(`cannot listen on ${bind}: no such address on this machine (check --bind)`);
    default:
      return err as Error;
  }
}
