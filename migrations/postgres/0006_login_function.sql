-- Logins in one round trip per batch: the statements of a batch of logins (postgres.rs used to send each login's
-- statements one by one, ten round trips with BEGIN and COMMIT) run inside PostgreSQL as one function call, in the
-- call's own transaction: one commit for the batch, as the SQLite writer thread commits its batches. Each login
-- runs the SQLite writer's steps (sqlite/writer.rs `login_statements`) and gets the answer it would have had alone:
-- a code already recorded, earlier or by a login before it in the batch, is 'code_used' and writes nothing.
--
-- The arguments are arrays, one element per login, all of the same length. Every login's advisory locks (its
-- identity's and its person's: postgres.rs `person_lock_keys`) are taken first, in ascending order, so two
-- batches never wait on each other in a circle over them.
--
-- Returns one row per login, in order: o_outcome 'ok' | 'code_used' (nothing written) | 'banned' (the user is
-- not active: the code is spent and a login_failed event written) | 'no_longer_active' (the user stopped being
-- active while this login waited for its row: nothing of this login is kept).
--
-- p_created_body: each user_created webhook's body with "id":-1 and "user_id":-2 standing for the event's and the
-- user's ids, or NULL when webhooks are off. The body's format is Rust's (sql.rs `webhook_body`).
--
-- The name carries a version: a change of arguments or behaviour is a new function in a new migration, so that
-- instances of the previous release keep calling theirs during a rolling upgrade.
CREATE FUNCTION wxlogin_login_v1(
    p_lock_identity BIGINT[], p_lock_person BIGINT[], p_code_hash TEXT[], p_platform TEXT[], p_appid TEXT[],
    p_openid TEXT[], p_unionid TEXT[], p_link BOOLEAN[], p_keep BIGINT[], p_previous TEXT[], p_token_hash TEXT[],
    p_session_key TEXT[], p_ip TEXT[], p_user_agent TEXT[], p_actor TEXT[], p_now BIGINT[], p_expires_at BIGINT[],
    p_created_body TEXT[])
RETURNS TABLE (o_index INT, o_outcome TEXT, o_user_id BIGINT, o_new_user BOOLEAN, o_identity_changed BOOLEAN,
               o_linked BOOLEAN, o_revoked TEXT[])
LANGUAGE plpgsql AS $$
DECLARE
    v_identity BIGINT;
    v_stored_unionid TEXT;
    v_status TEXT;
    v_event BIGINT;
    v_ended TEXT[];
    v_fresh TEXT[];
    v_taken TEXT[] := '{}';
    -- The batch's events (but a revocation's), written by one statement at the end; their ids are drawn as they
    -- happen, so ids keep the order of events.
    e_id BIGINT[] := '{}';
    e_type TEXT[] := '{}';
    e_user BIGINT[] := '{}';
    e_platform TEXT[] := '{}';
    e_appid TEXT[] := '{}';
    e_ip TEXT[] := '{}';
    e_user_agent TEXT[] := '{}';
    e_detail TEXT[] := '{}';
    e_at BIGINT[] := '{}';
    e_actor TEXT[] := '{}';
BEGIN
    PERFORM pg_advisory_xact_lock(k)
        FROM (SELECT DISTINCT k FROM unnest(p_lock_identity || p_lock_person) AS k ORDER BY k) AS keys;
    -- Every code in one statement; a code the table had, or that an earlier login of the batch carries, is used.
    WITH inserted AS (
        INSERT INTO used_codes (code_hash, appid, used_at)
            SELECT * FROM unnest(p_code_hash, p_appid, p_now) ON CONFLICT DO NOTHING RETURNING code_hash
    )
    SELECT coalesce(array_agg(code_hash), '{}') INTO v_fresh FROM inserted;
    FOR i IN 1 .. coalesce(array_length(p_code_hash, 1), 0) LOOP
        o_index := i;
        o_user_id := NULL;
        o_new_user := false;
        o_identity_changed := false;
        o_linked := false;
        o_revoked := '{}';
        IF NOT (p_code_hash[i] = ANY (v_fresh)) OR p_code_hash[i] = ANY (v_taken) THEN
            o_outcome := 'code_used';
            RETURN NEXT;
            CONTINUE;
        END IF;

        v_taken := v_taken || p_code_hash[i];
        SELECT ident.id, ident.user_id, ident.unionid, u.status
            INTO v_identity, o_user_id, v_stored_unionid, v_status
            FROM identities ident JOIN users u ON u.id = ident.user_id
            WHERE ident.platform = p_platform[i] AND ident.appid = p_appid[i] AND ident.openid = p_openid[i];
        IF FOUND THEN
            -- The login's last word on the user's status, before it writes anything else: the update waits for
            -- a concurrent ban, deletion or merge to commit, then matches no row if the user is no longer active.
            IF v_status = 'active' THEN
                UPDATE users SET last_login_at = p_now[i] WHERE id = o_user_id AND status = 'active';
                IF NOT FOUND THEN
                    DELETE FROM used_codes WHERE code_hash = p_code_hash[i];
                    o_outcome := 'no_longer_active';
                    RETURN NEXT;
                    CONTINUE;
                END IF;
            END IF;
            IF v_stored_unionid IS NULL AND p_unionid[i] IS NOT NULL THEN
                o_identity_changed := true;
                UPDATE identities SET unionid = p_unionid[i] WHERE id = v_identity;
            END IF;
        ELSE
            IF p_link[i] AND p_unionid[i] IS NOT NULL THEN
                SELECT ident.user_id, u.status INTO o_user_id, v_status
                    FROM identities ident JOIN users u ON u.id = ident.user_id
                    WHERE ident.platform = p_platform[i] AND ident.unionid = p_unionid[i] AND u.status <> 'deleted'
                    ORDER BY ident.user_id LIMIT 1;
                o_linked := FOUND;
            END IF;
            IF o_linked AND v_status = 'active' THEN
                UPDATE users SET last_login_at = p_now[i] WHERE id = o_user_id AND status = 'active';
                IF NOT FOUND THEN
                    DELETE FROM used_codes WHERE code_hash = p_code_hash[i];
                    o_linked := false;
                    o_outcome := 'no_longer_active';
                    RETURN NEXT;
                    CONTINUE;
                END IF;
            END IF;
            IF NOT o_linked THEN
                -- A new user, created with this login's time: no sessions yet, nothing to touch or trim.
                INSERT INTO users (status, created_at, last_login_at) VALUES ('active', p_now[i], p_now[i])
                    RETURNING id INTO o_user_id;
                v_status := 'active';
                o_new_user := true;
            END IF;
            INSERT INTO identities (user_id, platform, appid, openid, unionid, created_at)
                VALUES (o_user_id, p_platform[i], p_appid[i], p_openid[i], p_unionid[i], p_now[i])
                RETURNING id INTO v_identity;
        END IF;

        IF v_status <> 'active' THEN
            e_id := e_id || nextval('events_id_seq');
            e_type := e_type || 'login_failed'::text;
            e_user := e_user || o_user_id;
            e_platform := e_platform || p_platform[i];
            e_appid := e_appid || p_appid[i];
            e_ip := e_ip || p_ip[i];
            e_user_agent := e_user_agent || p_user_agent[i];
            e_detail := e_detail || '{"error":"banned"}'::text;
            e_at := e_at || p_now[i];
            e_actor := e_actor || p_actor[i];
            o_outcome := 'banned';
            RETURN NEXT;
            CONTINUE;
        END IF;

        IF p_previous[i] IS NOT NULL THEN
            WITH ended AS (
                DELETE FROM sessions WHERE token_hash = p_previous[i]
                    RETURNING id, token_hash, user_id, platform, appid
            ), logged AS (
                INSERT INTO events (type, user_id, platform, appid, ip, user_agent, detail, at, actor)
                    SELECT 'session_revoked', e.user_id, e.platform, e.appid, p_ip[i], p_user_agent[i],
                           '{"reason":"replaced","session_id":' || e.id || '}', p_now[i], p_actor[i]
                    FROM ended e ORDER BY e.id
            )
            SELECT array_agg(ended.token_hash ORDER BY ended.id) INTO v_ended FROM ended;
            o_revoked := o_revoked || coalesce(v_ended, '{}');
        END IF;
        IF NOT o_new_user THEN
            WITH ended AS (
                DELETE FROM sessions WHERE id IN (
                    SELECT s.id FROM sessions s WHERE s.user_id = o_user_id
                        ORDER BY s.id DESC LIMIT 1000000000 OFFSET p_keep[i])
                    RETURNING id, token_hash, user_id, platform, appid
            ), logged AS (
                INSERT INTO events (type, user_id, platform, appid, ip, user_agent, detail, at, actor)
                    SELECT 'session_revoked', e.user_id, e.platform, e.appid, p_ip[i], p_user_agent[i],
                           '{"reason":"limit","session_id":' || e.id || '}', p_now[i], p_actor[i]
                    FROM ended e ORDER BY e.id
            )
            SELECT array_agg(ended.token_hash ORDER BY ended.id) INTO v_ended FROM ended;
            o_revoked := o_revoked || coalesce(v_ended, '{}');
        END IF;

        INSERT INTO sessions (token_hash, user_id, identity_id, platform, appid, session_key, ip, user_agent,
                              created_at, last_seen_at, expires_at)
            VALUES (p_token_hash[i], o_user_id, v_identity, p_platform[i], p_appid[i], p_session_key[i], p_ip[i],
                    p_user_agent[i], p_now[i], p_now[i], p_expires_at[i]);
        -- A first login's events: user_created, then login (without the actor, as an admin never logs in for
        -- anyone); a returning user's: login.
        IF o_new_user THEN
            v_event := nextval('events_id_seq');
            e_id := e_id || v_event;
            e_type := e_type || 'user_created'::text;
            e_user := e_user || o_user_id;
            e_platform := e_platform || p_platform[i];
            e_appid := e_appid || p_appid[i];
            e_ip := e_ip || p_ip[i];
            e_user_agent := e_user_agent || p_user_agent[i];
            e_detail := e_detail || NULL::text;
            e_at := e_at || p_now[i];
            e_actor := e_actor || NULL::text;
            IF p_created_body[i] IS NOT NULL THEN
                INSERT INTO webhook_outbox (event_id, user_id, type, body, created_at, retry_from, next_at)
                    VALUES (v_event, o_user_id, 'user_created',
                            replace(replace(p_created_body[i], '"id":-1', '"id":' || v_event),
                                    '"user_id":-2', '"user_id":' || o_user_id),
                            p_now[i], p_now[i], p_now[i]);
            END IF;
        END IF;
        e_id := e_id || nextval('events_id_seq');
        e_type := e_type || 'login'::text;
        e_user := e_user || o_user_id;
        e_platform := e_platform || p_platform[i];
        e_appid := e_appid || p_appid[i];
        e_ip := e_ip || p_ip[i];
        e_user_agent := e_user_agent || p_user_agent[i];
        e_detail := e_detail || NULL::text;
        e_at := e_at || p_now[i];
        e_actor := e_actor || CASE WHEN o_new_user THEN NULL ELSE p_actor[i] END;
        o_outcome := 'ok';
        RETURN NEXT;
    END LOOP;
    INSERT INTO events (id, type, user_id, platform, appid, ip, user_agent, detail, at, actor)
        SELECT * FROM unnest(e_id, e_type, e_user, e_platform, e_appid, e_ip, e_user_agent, e_detail, e_at, e_actor);
END
$$;
