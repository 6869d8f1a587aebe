"""A dbwriter client for the MySQL family (MariaDB on the test bed), through PyMySQL."""


class MySQLClient:
    """The MySQL family (MariaDB here) through PyMySQL."""

    port = 3306

    def __init__(self, user: str, password: str, database: str):
        self.user, self.password, self.database = user, password, database

    def connect(self, address: str):
        import pymysql

        # read_timeout: a commit on a host that died fails in seconds; its outcome is then
        # unknown and it is not counted as acknowledged.
        return pymysql.connect(
            host=address,
            port=self.port,
            user=self.user,
            password=self.password,
            database=self.database,
            connect_timeout=2,
            read_timeout=5,
            write_timeout=5,
            autocommit=True,
        )

    def writable(self, conn) -> bool:
        with conn.cursor() as c:
            c.execute("SELECT @@global.read_only")
            return c.fetchone()[0] == 0

    def create(self, conn, table: str) -> None:
        with conn.cursor() as c:
            c.execute(
                f"CREATE TABLE IF NOT EXISTS {table} (id BIGINT PRIMARY KEY, "
                "at TIMESTAMP(6) DEFAULT CURRENT_TIMESTAMP(6))"
            )

    def insert(self, conn, table: str, i: int) -> None:
        with conn.cursor() as c:
            c.execute(f"INSERT INTO {table} (id) VALUES (%s)", (i,))

    def ids(self, conn, table: str) -> set[int]:
        with conn.cursor() as c:
            c.execute(f"SELECT id FROM {table}")
            return {r[0] for r in c.fetchall()}
