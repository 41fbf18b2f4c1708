//! The rules: who may change what. Pure functions of the current state, so they are written once
//! for both storage backends and tested without a database; the store runs them inside the
//! transaction that applies their decision.
//!
//! The conversation a membership rule sees holds the members its request involves (the users it
//! names, and who asks) and the first ones in member order, not every member of a large group;
//! `member_count` is the whole count (see `Store::change_members`).

use std::collections::HashMap;

use crate::domain::{Conversation, ConversationKind, Member, Message, MessageBody, Role, UserId};
use crate::error::{Error, Result};
use crate::store::{MembershipPlan, MessageChange};

pub const CONVERSATION_NOT_FOUND: &str = "conversation not found";
pub const MESSAGE_NOT_FOUND: &str = "message not found";
/// Says no more than that: the same words whichever of the two blocked the other.
pub const BLOCKED: &str = "you can't message this user";
/// For an attachment that doesn't exist and one the caller may not see alike.
pub const ATTACHMENT_NOT_FOUND: &str = "attachment not found";

/// The caller's role, or `not_found` when they are not a member: a conversation you are not in
/// looks exactly like one that doesn't exist.
fn role_of(conversation: &Conversation, actor: &UserId) -> Result<Role> {
    conversation
        .member(actor)
        .map(|m| m.role)
        .ok_or(Error::NotFound(CONVERSATION_NOT_FOUND))
}

/// The members by id: requests name up to 1,000 users, and a group holds up to 100,000, so
/// each is looked up in a map rather than searched for.
fn by_id(conversation: &Conversation) -> HashMap<&UserId, &Member> {
    conversation
        .members
        .iter()
        .map(|m| (&m.user_id, m))
        .collect()
}

fn managers_only(conversation: &Conversation, actor: &UserId, what: &'static str) -> Result<Role> {
    let role = role_of(conversation, actor)?;
    if conversation.kind == ConversationKind::Direct {
        return Err(Error::invalid(
            "conversation_id",
            "direct conversations have fixed members",
        ));
    }
    if role < Role::Admin {
        return Err(Error::Forbidden(what));
    }
    Ok(role)
}

/// `departed`: which of `users` left this group by their own choice. Being added needs no
/// consent, so leaving has to stick: they can't be added back.
pub fn add_members(
    conversation: &Conversation,
    actor: &UserId,
    users: &[UserId],
    departed: &[UserId],
    max_members: usize,
) -> Result<MembershipPlan> {
    managers_only(
        conversation,
        actor,
        "only the owner or an admin can add members",
    )?;
    if !departed.is_empty() {
        return Err(Error::Forbidden(
            "people who left a group can't be added back to it",
        ));
    }
    let present = by_id(conversation);
    let add: Vec<UserId> = users
        .iter()
        .filter(|u| !present.contains_key(u))
        .cloned()
        .collect();
    if conversation.member_count as usize + add.len() > max_members {
        return Err(Error::too_large(
            "user_ids",
            format!("a group holds at most {max_members} members"),
        ));
    }
    Ok(MembershipPlan {
        add,
        ..Default::default()
    })
}

pub fn remove_members(
    conversation: &Conversation,
    actor: &UserId,
    users: &[UserId],
) -> Result<MembershipPlan> {
    let actor_role = managers_only(
        conversation,
        actor,
        "only the owner or an admin can remove members",
    )?;
    let present = by_id(conversation);
    let mut remove = Vec::new();
    for user in users {
        let Some(member) = present.get(user) else {
            continue;
        };
        if user == actor {
            return Err(Error::invalid(
                "user_ids",
                "to leave a conversation, use conversation:leave",
            ));
        }
        if member.role == Role::Owner {
            return Err(Error::Forbidden("the owner can't be removed"));
        }
        if member.role == Role::Admin && actor_role != Role::Owner {
            return Err(Error::Forbidden("only the owner can remove an admin"));
        }
        remove.push(user.clone());
    }
    Ok(MembershipPlan {
        remove,
        ..Default::default()
    })
}

pub fn leave(conversation: &Conversation, actor: &UserId) -> Result<MembershipPlan> {
    let role = role_of(conversation, actor)?;
    if conversation.kind == ConversationKind::Direct {
        return Err(Error::invalid(
            "conversation_id",
            "direct conversations can't be left",
        ));
    }
    let mut plan = MembershipPlan {
        remove: vec![actor.clone()],
        departures: vec![actor.clone()],
        ..Default::default()
    };
    if role == Role::Owner {
        if let Some(heir) = heir(conversation, std::slice::from_ref(actor)) {
            plan.set_role.push((heir.clone(), Role::Owner));
        }
    }
    Ok(plan)
}

/// Who takes over from an owner leaving with `leaving`: the longest-standing admin, else the
/// longest-standing member, among those who stay.
fn heir<'a>(conversation: &'a Conversation, leaving: &[UserId]) -> Option<&'a UserId> {
    conversation
        .members
        .iter()
        .filter(|m| !leaving.contains(&m.user_id))
        .max_by(|a, b| {
            a.role
                .cmp(&b.role)
                .then(b.joined_at.cmp(&a.joined_at))
                .then_with(|| b.user_id.cmp(&a.user_id))
        })
        .map(|m| &m.user_id)
}

pub fn edit(
    message: &Message,
    role: Option<Role>,
    actor: &UserId,
    body: MessageBody,
) -> Result<MessageChange> {
    if role.is_none() {
        return Err(Error::NotFound(MESSAGE_NOT_FOUND));
    }
    if message.sender_id.as_ref() != Some(actor) {
        return Err(Error::Forbidden("only the sender can edit a message"));
    }
    if message.deleted_at.is_some() {
        return Err(Error::Conflict("the message was deleted"));
    }
    Ok(MessageChange::Edit(body))
}

pub fn delete(message: &Message, role: Option<Role>, actor: &UserId) -> Result<MessageChange> {
    if role.is_none() {
        return Err(Error::NotFound(MESSAGE_NOT_FOUND));
    }
    if message.sender_id.as_ref() != Some(actor) {
        return Err(Error::Forbidden("only the sender can delete a message"));
    }
    if message.deleted_at.is_some() {
        return Ok(MessageChange::Unchanged);
    }
    Ok(MessageChange::Delete)
}

// The host app's server (the server API) manages groups for its users: it is no member, so the
// roles don't bind it, but groups keep their shape.

fn groups_only(conversation: &Conversation) -> Result<()> {
    if conversation.kind == ConversationKind::Direct {
        return Err(Error::invalid(
            "conversation_id",
            "direct conversations have fixed members",
        ));
    }
    Ok(())
}

/// The host app adds members. Unlike another member, it may add back someone who left: the
/// app speaks for its users (it is where they asked to rejoin, or bought again).
pub fn app_add_members(
    conversation: &Conversation,
    users: &[UserId],
    max_members: usize,
) -> Result<MembershipPlan> {
    groups_only(conversation)?;
    let present = by_id(conversation);
    let add: Vec<UserId> = users
        .iter()
        .filter(|u| !present.contains_key(u))
        .cloned()
        .collect();
    if conversation.member_count as usize + add.len() > max_members {
        return Err(Error::too_large(
            "user_ids",
            format!("a group holds at most {max_members} members"),
        ));
    }
    // A group the app emptied has no owner: the first one added becomes it, so a group with
    // members always has an owner.
    let set_role = match add.first() {
        Some(first) if !conversation.members.iter().any(|m| m.role == Role::Owner) => {
            vec![(first.clone(), Role::Owner)]
        }
        _ => Vec::new(),
    };
    Ok(MembershipPlan {
        add,
        set_role,
        ..Default::default()
    })
}

/// The host app removes members, the owner included: ownership then passes on as when an owner
/// leaves, so a group with members always has an owner.
pub fn app_remove_members(conversation: &Conversation, users: &[UserId]) -> Result<MembershipPlan> {
    groups_only(conversation)?;
    let present = by_id(conversation);
    let remove: Vec<UserId> = users
        .iter()
        .filter(|u| present.contains_key(u))
        .cloned()
        .collect();
    let mut plan = MembershipPlan {
        remove,
        ..Default::default()
    };
    let owner_leaves = conversation
        .members
        .iter()
        .any(|m| m.role == Role::Owner && plan.remove.contains(&m.user_id));
    if owner_leaves {
        if let Some(heir) = heir(conversation, &plan.remove) {
            plan.set_role.push((heir.clone(), Role::Owner));
        }
    }
    Ok(plan)
}

/// An erased user's membership ends, in a direct conversation too (the other member keeps it,
/// alone); a group's ownership passes on as when an owner leaves.
pub fn erase_member(conversation: &Conversation, user: &UserId) -> Result<MembershipPlan> {
    let Some(member) = conversation.member(user) else {
        return Ok(MembershipPlan::default());
    };
    let mut plan = MembershipPlan {
        remove: vec![user.clone()],
        ..Default::default()
    };
    if member.role == Role::Owner {
        if let Some(heir) = heir(conversation, &plan.remove) {
            plan.set_role.push((heir.clone(), Role::Owner));
        }
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ConversationId, Member, Timestamp};

    fn user(s: &str) -> UserId {
        UserId::parse(s).unwrap()
    }

    fn group(members: &[(&str, Role, i64)]) -> Conversation {
        Conversation {
            id: ConversationId::new(),
            kind: ConversationKind::Group,
            title: Some("t".into()),
            member_count: members.len() as i64,
            members: members
                .iter()
                .map(|(u, role, joined)| Member {
                    user_id: user(u),
                    name: None,
                    role: *role,
                    last_read_seq: 0,
                    joined_at: Timestamp(*joined),
                })
                .collect(),
            created_at: Timestamp(0),
            last_seq: 0,
            last_message: None,
            read_state: None,
        }
    }

    #[test]
    fn only_managers_add_and_the_cap_holds() {
        let g = group(&[
            ("o", Role::Owner, 0),
            ("a", Role::Admin, 1),
            ("m", Role::Member, 2),
        ]);
        assert_eq!(
            add_members(&g, &user("m"), &[user("x")], &[], 10)
                .unwrap_err()
                .code(),
            "forbidden"
        );
        assert_eq!(
            add_members(&g, &user("stranger"), &[user("x")], &[], 10)
                .unwrap_err()
                .code(),
            "not_found"
        );
        let plan = add_members(&g, &user("a"), &[user("x"), user("m")], &[], 10).unwrap();
        assert_eq!(plan.add, [user("x")]);
        assert_eq!(
            add_members(&g, &user("o"), &[user("x"), user("y")], &[], 4)
                .unwrap_err()
                .code(),
            "too_large"
        );
    }

    #[test]
    fn a_group_the_app_emptied_gets_an_owner_again() {
        let g = group(&[("o", Role::Owner, 0), ("m", Role::Member, 1)]);
        let plan = app_remove_members(&g, &[user("o")]).unwrap();
        assert_eq!(plan.set_role, [(user("m"), Role::Owner)]);
        let empty = group(&[]);
        let plan = app_add_members(&empty, &[user("x"), user("y")], 10).unwrap();
        assert_eq!(plan.set_role, [(user("x"), Role::Owner)]);
        // With an owner, those added are members.
        assert!(
            app_add_members(&g, &[user("x")], 10)
                .unwrap()
                .set_role
                .is_empty()
        );
    }

    #[test]
    fn who_left_stays_out_and_leaving_is_recorded() {
        let g = group(&[("o", Role::Owner, 0), ("m", Role::Member, 1)]);
        let err = add_members(
            &g,
            &user("o"),
            &[user("x"), user("gone")],
            &[user("gone")],
            10,
        )
        .unwrap_err();
        assert_eq!(err.code(), "forbidden");
        assert_eq!(leave(&g, &user("m")).unwrap().departures, [user("m")]);
        // A removal is the admin's decision, not the member's: no departure.
        assert!(
            remove_members(&g, &user("o"), &[user("m")])
                .unwrap()
                .departures
                .is_empty()
        );
    }

    #[test]
    fn owners_and_admins_are_protected() {
        let g = group(&[
            ("o", Role::Owner, 0),
            ("a", Role::Admin, 1),
            ("b", Role::Admin, 2),
            ("m", Role::Member, 3),
        ]);
        assert_eq!(
            remove_members(&g, &user("a"), &[user("o")])
                .unwrap_err()
                .code(),
            "forbidden"
        );
        assert_eq!(
            remove_members(&g, &user("a"), &[user("b")])
                .unwrap_err()
                .code(),
            "forbidden"
        );
        assert_eq!(
            remove_members(&g, &user("o"), &[user("b")]).unwrap().remove,
            [user("b")]
        );
        assert_eq!(
            remove_members(&g, &user("a"), &[user("m"), user("zz")])
                .unwrap()
                .remove,
            [user("m")]
        );
        assert_eq!(
            remove_members(&g, &user("a"), &[user("a")])
                .unwrap_err()
                .code(),
            "invalid_payload"
        );
    }

    #[test]
    fn a_leaving_owner_hands_over_to_the_oldest_admin_else_member() {
        let g = group(&[
            ("o", Role::Owner, 0),
            ("m", Role::Member, 1),
            ("a2", Role::Admin, 3),
            ("a1", Role::Admin, 2),
        ]);
        let plan = leave(&g, &user("o")).unwrap();
        assert_eq!(plan.remove, [user("o")]);
        assert_eq!(plan.set_role, [(user("a1"), Role::Owner)]);
        let g = group(&[
            ("o", Role::Owner, 0),
            ("m2", Role::Member, 2),
            ("m1", Role::Member, 1),
        ]);
        assert_eq!(
            leave(&g, &user("o")).unwrap().set_role,
            [(user("m1"), Role::Owner)]
        );
        assert!(leave(&g, &user("m1")).unwrap().set_role.is_empty());
    }

    #[test]
    fn the_app_manages_groups_and_ownership_passes_on() {
        let g = group(&[
            ("o", Role::Owner, 0),
            ("m1", Role::Member, 1),
            ("m2", Role::Member, 2),
        ]);
        let plan = app_remove_members(&g, &[user("o"), user("m1"), user("zz")]).unwrap();
        assert_eq!(plan.remove, [user("o"), user("m1")]);
        assert_eq!(plan.set_role, [(user("m2"), Role::Owner)]);
        assert!(
            app_remove_members(&g, &[user("m1")])
                .unwrap()
                .set_role
                .is_empty()
        );
        assert_eq!(
            app_add_members(&g, &[user("x"), user("o")], 10)
                .unwrap()
                .add,
            [user("x")]
        );
        assert_eq!(
            app_add_members(&g, &[user("x"), user("y")], 4)
                .unwrap_err()
                .code(),
            "too_large"
        );
        let mut direct = g.clone();
        direct.kind = ConversationKind::Direct;
        assert_eq!(
            app_add_members(&direct, &[user("x")], 10)
                .unwrap_err()
                .code(),
            "invalid_payload"
        );
    }
}
