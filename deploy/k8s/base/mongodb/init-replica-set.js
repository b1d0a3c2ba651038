// Run by the mongodb-init Job (init-job.yaml) with mongosh; idempotent, safe to re-run.
// Phase "initiate" (connected to mongodb-0): initiate rs0 once.
// Phase "users" (connected to the replica set): create or update one user per service,
// with readWrite on its own database only.
const ns = process.env.POD_NAMESPACE;
if (process.env.PHASE === "initiate") {
  try {
    rs.status();
    print("rs0 already initiated");
  } catch (e) {
    if (e.codeName !== "NotYetInitialized") throw e;
    rs.initiate({
      _id: "rs0",
      members: [0, 1, 2].map((i) => ({
        _id: i,
        host: `mongodb-${i}.mongodb.${ns}.svc.cluster.local:27017`,
        priority: i === 0 ? 2 : 1,
      })),
    });
    print("rs0 initiated");
  }
} else {
  for (const service of process.env.SERVICES.split(",")) {
    const user = `studyshare-${service}`;
    const dbName = `studyshare_${service.replaceAll("-", "_")}`;
    const pwd = process.env[`PASSWORD_${service.toUpperCase().replaceAll("-", "_")}`];
    if (!pwd) throw new Error(`no password for ${service}`);
    const target = db.getSiblingDB(dbName);
    const roles = [{ role: "readWrite", db: dbName }];
    if (target.getUser(user)) {
      target.updateUser(user, { pwd, roles });
      print(`updated ${user}`);
    } else {
      target.createUser({ user, pwd, roles });
      print(`created ${user}`);
    }
  }
}
